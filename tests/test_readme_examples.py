"""Every shell example of the README runs as written, in a temp dir, against a real server.

The examples are the ```` ```sh ```` blocks. Each block runs as one bash script in a folder
holding what the README's prose says is there: a server started as `make run` starts it
(`chatlog serve` on ./chatlog.db, here with `--rate 0` as the bench example asks), some chat in
room `lobby`, `chat.db` (a copy of that log) and `.venv` (this interpreter's environment). Only
these are changed: the server's port for ``127.0.0.1:8080`` (8080 may be taken on a shared
machine), a free port for every `--port` of a command that starts a server and for
``CHATLOG_PORT``, and the PID for ``$(pgrep -f 'chatlog serve')``. Commands that run until
stopped (`serve`, `--follow`, `--pace`, the baseline server) get Ctrl-C after a few seconds and
pass if they had not failed by then. :data:`SKIPS` lists what does not run here, and why.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import ServerProcess, free_port, skip_or_fail
from tests.wsclients import ChatClient

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

#: Commands that do not run here: (pattern, why). Each must still match a README command.
SKIPS: tuple[tuple[str, str], ...] = (
    (r"^make (run|test)\b", "make itself: make test is this suite, make run is chatlog serve"),
    (r"\bpytest\b", "the test suite itself"),
    (r"^createdb |db\.internal", "a PostgreSQL deployment with a placeholder host"),
    (r"--postgres postgresql://", "a measurement on PostgreSQL (tests/test_bench.py, small)"),
    (r"^chatlog bench --spawn --baseline", "a measurement using both cores for a minute"),
    (r"benchmarks/", "a benchmark that builds logs of up to 1M rows"),
    (r"tests\.echo_app|^kosoku ", "the Autobahn run (tests/test_autobahn.py)"),
    (r"^chatlog redact 1234 ", "needs a message 1234 (tests/test_erasure.py redacts live)"),
)
#: Commands that run until stopped: Ctrl-C after this many seconds.
UNTIL_STOPPED = (r"^chatlog serve\b", r"--follow\b", r"--pace\b", r"chatlog\.bench\.baseline")
STOP_AFTER_S = 5


def sh_blocks() -> list[tuple[int, str]]:
    """Every ```sh block of the README, with the line it starts on."""
    return [
        (README[: m.start()].count("\n") + 2, m.group(1))
        for m in re.finditer(r"^```sh\n(.*?)^```", README, re.S | re.M)
    ]


def _complete(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:  # a quote still open: the command goes on on the next line
        return False
    return not text.endswith("\\")


def commands(block: str) -> list[str]:
    """The block's commands: continued lines, quotes across lines and heredocs kept whole."""
    found: list[str] = []
    current: list[str] = []
    heredoc: str | None = None
    for line in block.splitlines():
        if heredoc is not None:
            current.append(line)
            if line.strip() == heredoc:
                found.append("\n".join(current))
                current, heredoc = [], None
            continue
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current.append(line)
        if match := re.search(r"<<-?'?(\w+)'?", line):
            heredoc = match.group(1)
        elif _complete("\n".join(current)):
            found.append("\n".join(current))
            current = []
    assert not current and heredoc is None, f"unfinished command: {current}"
    return found


def skip_reason(command: str) -> str | None:
    return next((why for pattern, why in SKIPS if re.search(pattern, command, re.M)), None)


ALL = [(line, command) for line, block in sh_blocks() for command in commands(block)]


def test_the_split_finds_the_examples() -> None:
    """The splitter keeps multi-line commands whole, so each example runs as one command."""
    runs = [c for _, c in ALL if not skip_reason(c)]
    assert len(runs) >= 25, runs
    assert any(c.startswith(".venv/bin/python - <<'PY'") and c.endswith("PY") for c in runs)
    assert any("\n" in c and c.startswith("chatlog sql") for c in runs)


@pytest.mark.parametrize("pattern, why", SKIPS)
def test_every_skip_still_matches_an_example(pattern: str, why: str) -> None:
    """A skip whose example is gone from the README is stale and must go too."""
    assert any(re.search(pattern, c, re.M) for _, c in ALL), f"{pattern!r} ({why}) matches nothing"


class Folder:
    """The folder the examples run in, and the server they talk to."""

    def __init__(self, path: Path, server: ServerProcess) -> None:
        self.path = path
        self.server = server

    def script(self, block: str) -> str:
        """The block as a bash script that stops at the first command that fails."""
        lines = ["set -o pipefail"]
        for command in commands(block):
            if skip_reason(command):
                continue
            command = command.replace("127.0.0.1:8080", f"127.0.0.1:{self.server.port}")
            command = command.replace("$(pgrep -f 'chatlog serve')", str(self.server.pid))
            allowed = "0"
            if any(re.search(p, command) for p in UNTIL_STOPPED):
                command = re.sub(r"--port \d+", lambda _: f"--port {free_port()}", command)
                command = f"timeout -s INT {STOP_AFTER_S} {command}"
                allowed = "0|124"  # 124: it was still running when stopped
            quoted = shlex.quote(command.splitlines()[0])
            lines += [
                command,
                f'rc=$?; case $rc in {allowed}) ;; *) echo "failed with exit $rc: "{quoted} >&2;'
                " exit 1;; esac",
            ]
        return "\n".join(lines) + "\n"

    def run(self, block: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATLOG_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["CHATLOG_PORT"] = str(free_port())  # for a `chatlog serve` without --port
        return subprocess.run(
            ["bash", "-c", self.script(block)],
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,  # a block of a dozen commands on a loaded machine
        )


async def _chat(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        alice = await ChatClient.connect(session, f"{url}?room=lobby")
        bob = await ChatClient.connect(session, f"{url}?room=lobby")
        await alice.alias("alice")
        await bob.alias("bob")
        for i, (who, text) in enumerate(
            [(alice, "morning"), (bob, "deploy at 10?"), (alice, "漢字 and 👋"), (bob, "ok")]
        ):
            await who.say(text)
            await alice.chats(1) if i == 0 else await alice.recv("Chat")
        await alice.close()
        await bob.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Folder]:
    """A folder as after `make run` and some chat, with its server running."""
    path = tmp_path_factory.mktemp("readme")
    (path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    with ServerProcess(path / "chatlog.db", log=path.parent / "readme-server.log") as server:
        asyncio.run(_chat(server.url))
        copy = subprocess.run(
            f"{sys.executable} -m chatlog export --db chatlog.db"
            f" | {sys.executable} -m chatlog import - --db chat.db",
            shell=True,
            cwd=path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert copy.returncode == 0, copy.stderr
        yield Folder(path, server)


#: The blocks with at least one command that runs here.
RUNNABLE = [(n, b) for n, b in sh_blocks() if any(not skip_reason(c) for c in commands(b))]


@pytest.mark.parametrize("line, block", RUNNABLE, ids=[f"line-{n}" for n, _ in RUNNABLE])
def test_readme_example_runs(folder: Folder, line: int, block: str) -> None:
    """The README's shell block at this line runs as written and every command succeeds."""
    runnable = [c for c in commands(block) if not skip_reason(c)]
    if any(c.startswith("sqlite3 ") for c in runnable) and shutil.which("sqlite3") is None:
        skip_or_fail("the sqlite3 command is not installed (apt-get install sqlite3)")
    result = folder.run(block)
    assert result.returncode == 0, f"README line {line}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
