"""The servers ``chatlog bench`` starts and watches: free ports, processes, CPU and memory.

Both the SQLite targets (:mod:`chatlog.bench.command`) and the PostgreSQL clusters
(:mod:`chatlog.bench.postgres`) are built from these pieces.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import click


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Spawned:
    """A server process started by the bench, stopped by its own PID when the run ends."""

    def __init__(self, argv: list[str], port: int, log: Path, env: dict[str, str]) -> None:
        self.port = port
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise click.ClickException(
                    f"the server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise click.ClickException(f"the server did not answer /healthz within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class ServerProbe:
    """CPU time and memory of a server process (spawned, or given with ``--pid``)."""

    def __init__(self, pid: int) -> None:
        # Imported here: every `chatlog` command imports this module, and psutil costs
        # about 25 ms of start-up that only the bench needs.
        import psutil

        self.pid = pid
        self.proc = psutil.Process(pid)

    def cpu(self) -> float:
        times = self.proc.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def peak_rss(self) -> int:
        """VmHWM (the kernel's peak RSS) on Linux, else the current RSS."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return self.rss()


def chatlog_argv(port: int, db: Path | str, synchronous: str, extra: tuple[str, ...]) -> list[str]:
    """The command line of a spawned chatlog server: temp db, heartbeat off, no rate limit."""
    argv = [sys.executable, "-m", "chatlog", "serve", "--port", str(port), "--db", str(db)]
    argv += ["--heartbeat", "0", "--synchronous", synchronous]
    # The load comes from one address at rates no person reaches: lift the rate limit and
    # the per-address connection cap (chatlog.server.limits), or they would throttle the bench.
    argv += ["--rate", "0", "--max-connections-per-ip", "0"]
    return argv + list(extra)


class Running(Protocol):
    """What a target's servers offer: one :class:`Spawned` or a PostgreSQL cluster."""

    def wait_ready(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Launch:
    """One measured run's target, started (or, at ``--url``, just named)."""

    #: The URL the clients use, and all of them when several servers share a database.
    url: str
    servers: Running | None
    probe: ServerProbe | None
    urls: tuple[str, ...] = ()
    #: The database file of a chatlog server the bench spawned on SQLite (read after a run).
    sqlite: Path | None = None
