"""What the tests share: free ports, skip-or-fail, ``eventually``, the chat server in-process or
as a ``chatlog serve`` subprocess, and one runner for the ``chatlog`` CLI. The logs under test
(SQLite and PostgreSQL) and their rows are in :mod:`tests.backends`, the WebSocket clients in
:mod:`tests.wsclients`.

Nothing here runs at import time; :mod:`tests.conftest` builds its fixtures from these.
"""

from __future__ import annotations

import asyncio
import fcntl
import inspect
import os
import pty
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from chatlog.cli.main import main
from chatlog.server.app import create_app
from chatlog.settings import Settings

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip for a missing dependency outside CI; under CI=true a missing dependency fails."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests may not be skipped)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def in_thread(coro: Awaitable[T]) -> T:
    """Run a coroutine on its own loop in a worker thread (for sync code, even inside a loop)."""

    async def run() -> T:
        return await coro

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


async def eventually(
    check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``check`` (a function or coroutine function) until it holds; fail after ``timeout``.

    A check returns ``True``/``False``, or asserts (returning ``None``): an ``AssertionError``
    means "not yet", and the last one is raised if the time runs out.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        failure: AssertionError | None = None
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
        except AssertionError as exc:
            failure, result = exc, False
        if result is not True and result is not False and result is not None:
            raise TypeError(f"a check returns a bool or asserts, not {result!r}")
        if result is not False:
            return
        if loop.time() > deadline:
            if failure is not None:
                failure.add_note(f"(still failing after {timeout}s)")
                raise failure
            raise AssertionError(f"condition still false after {timeout}s")
        await asyncio.sleep(interval)


# --- the server -----------------------------------------------------------------------------------


async def start_server(
    app: web.Application | Settings, *, port: int | None = None, **runner_kwargs: Any
) -> TestServer:
    """Serve ``app`` (or ``create_app(settings)``) in this process on 127.0.0.1; the caller
    awaits ``close()``. ``runner_kwargs`` go to aiohttp's ``AppRunner`` (``access_log_class``)."""
    server = TestServer(create_app(app) if isinstance(app, Settings) else app, port=port)
    await server.start_server(**runner_kwargs)
    return server


#: The ``start`` fixture: ``await start(runner_kwargs, **changes)`` starts another server on the
#: test's log with some settings changed.
Start = Callable[..., Awaitable[TestServer]]


class ServerProcess:
    """``python -m chatlog serve`` in a subprocess on a loopback port; stderr goes to a log
    file (a pipe could fill up), appended to across restarts. The port stays the same across
    restarts, and ``db`` may be changed between them."""

    #: No rate limit and no heartbeat: tests send bursts no person types, and test_guard tests
    #: both limits with flags of its own.
    DEFAULTS = ("--heartbeat", "0", "--rate", "0")

    def __init__(
        self,
        db: str | Path,
        *args: str,
        port: int | None = None,
        prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.db = str(db)
        #: Flags after the defaults (a later flag wins): ``"--resume-max", "5"``.
        self.args = args
        self.port = port or free_port()
        #: A command the server runs under, e.g. ``("fiu-run", "-x")`` for fault injection.
        self.prefix = prefix
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        # A file path gets its log beside it; a database URL one in the temp dir, removed after.
        self._own_log = log is None and "://" in self.db
        if log is None:
            log = _temp_log() if self._own_log else Path(self.db).with_suffix(".log")
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        #: Seconds the last start took until the port accepted connections.
        self.started_in = 0.0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start and wait until the port accepts connections."""
        began = time.monotonic()
        command = [*self.prefix, sys.executable, "-m", "chatlog", "serve", "--db", self.db]
        command += ["--port", str(self.port), *self.DEFAULTS, *self.args]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command, env=self.env, stdout=subprocess.DEVNULL, stderr=log
            )
        while time.monotonic() - began < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    self.started_in = time.monotonic() - began
                    return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"server did not start listening in time: {self.output()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        """Everything the server wrote to stderr so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        self.kill()
        if self._own_log:
            self.log.unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        # Started already (``with ServerProcess(...).start() as s``): a second start would
        # find the port answering and leave the first process running after the test.
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _temp_log() -> Path:
    fd, name = tempfile.mkstemp(prefix="chatlog-serve-", suffix=".log")
    os.close(fd)
    return Path(name)


# --- the CLI --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    """What a ``chatlog`` run left: its exit code and what it wrote to stdout and stderr."""

    exit_code: int
    stdout_bytes: bytes
    stderr_bytes: bytes
    #: Both streams: interleaved for an in-process run, stdout then stderr for a process.
    output_bytes: bytes

    @staticmethod
    def _text(data: bytes) -> str:
        return data.decode("utf-8", "replace").replace("\r\n", "\n")

    @property
    def stdout(self) -> str:
        return self._text(self.stdout_bytes)

    @property
    def stderr(self) -> str:
        return self._text(self.stderr_bytes)

    @property
    def output(self) -> str:
        return self._text(self.output_bytes)


def run_cli(
    *args: str,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    process: bool = False,
    terminal: str | None = None,
    timeout: float = 60.0,
) -> CliResult:
    """Run ``chatlog ARGS``: in-process through click's runner (fast, stderr kept apart), or
    with ``process=True`` as ``python -m chatlog`` the way a user runs it. ``terminal="stdout"``
    (or ``"stderr"``) runs a process with that stream on a pseudo-terminal and the other one
    discarded; the result then holds what the terminal received."""
    if terminal is not None:
        code, seen = _on_terminal(terminal, list(args), timeout)
        out, err = (seen, b"") if terminal == "stdout" else (b"", seen)
        return CliResult(code, out, err, out + err)
    if process:
        done = subprocess.run(
            [sys.executable, "-m", "chatlog", *args],
            input=input,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
        return CliResult(done.returncode, done.stdout, done.stderr, done.stdout + done.stderr)
    result = CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)
    return CliResult(
        result.exit_code, result.stdout_bytes, result.stderr_bytes, result.output_bytes
    )


def _on_terminal(stream: str, args: list[str], timeout: float) -> tuple[int, bytes]:
    leader, follower = pty.openpty()
    # A fresh pty is 0x0; tqdm would fit its bar into zero columns and print nothing.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO once the child has closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    streams: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    streams[stream] = follower
    cmd = [sys.executable, "-m", "chatlog", *args]
    proc = subprocess.Popen(cmd, stdout=streams["stdout"], stderr=streams["stderr"])
    os.close(follower)
    code = proc.wait(timeout)
    reader.join(10)
    os.close(leader)
    return code, b"".join(chunks)
