"""One CLI error policy: every command, given a bad database, flag or range, prints one `Error:`
line (two at most) and exits 1, or 2 for a usage mistake; never a traceback.

Every case is a real process running `python -m chatlog`'s own ``__main__``, with real file
descriptors, so a traceback would really show on its stderr. To keep some fifty of them fast,
one launcher imports chatlog once and forks a child per case (:func:`launch`); Ctrl-C and a
closed pipe are tested on plain `python -m chatlog` processes.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.backends import POSTGRES_ENV
from tests.helpers import skip_or_fail


def server_url() -> str | None:
    """The test PostgreSQL server, if one is configured."""
    return os.environ.get(POSTGRES_ENV) or None


#: Bytes that are not a SQLite database (and not empty: an empty file is an empty database).
JUNK = b"this is not a chatlog database, only some text\n" * 100
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"
#: One message, exactly as `chatlog export` writes it (see chatlog/history/transfer.py).
ONE_ROW = (
    b'{"id":1,"room":"lobby","ws_id":"w1","author":"alice","message":"aGk=","text":"hi",'
    b'"raw":"{\\"Message\\":\\"aGk=\\"}","sent_at":"2026-11-25 20:21:15.409091",'
    b'"nonce":null}\n'
)

#: Every command that opens the log, as run against a bad database (``{export}``: ONE_ROW's file).
COMMANDS = {
    "sql": ["sql", "select 1"],
    "replay": ["replay"],
    "replay-range": ["replay", "1..2"],
    "export": ["export"],
    "export-to-file": ["export", "-o", "out.jsonl"],
    "import": ["import", "{export}"],
    "purge": ["purge", "--retain-days", "1"],
    "vacuum": ["vacuum"],
    "redact": ["redact", "1"],
    "erase": ["erase", "--author", "bob", "--yes"],
    "db-current": ["db", "current"],
    "db-upgrade": ["db", "upgrade"],
    "db-downgrade": ["db", "downgrade", "base"],
    "serve": ["serve", "--port", "0"],
}
#: The commands for which a missing file is an error (the others create the database).
READERS = {
    "sql",
    "replay",
    "replay-range",
    "export",
    "export-to-file",
    "purge",
    "vacuum",
    "redact",
    "erase",
    "db-current",
    "db-downgrade",
}
#: The commands that need the log at the newest schema (the others migrate it, or report it).
NEED_SCHEMA = {"sql", "replay", "replay-range", "export", "export-to-file", "purge", "vacuum"}
#: Each bad database, and words its error line must hold.
BAD = {
    "junk-file": "junk.db is not a chatlog database (file is not a database)",
    "empty-file": "empty.db is not a chatlog database (it has no chatlog tables)",
    "old-schema-file": "old.db is at schema revision 0001 and this chatlog needs ",
    "directory": "adir is a directory",
    "missing-file": "no database at",
    "unreachable-postgres": "cannot reach PostgreSQL at 127.0.0.1:1 (connection refused)",
}
#: Usage mistakes (exit 2), against a good database, and words their line must hold.
USAGE = {
    "replay-limit-0": (["replay", "--limit", "0"], "'--limit': 0 is not in the range"),
    "sql-without-query": (["sql"], "Missing argument 'QUERY'"),
    "replay-backwards-range": (["replay", "5..2"], "bad range '5..2'"),
    "replay-not-a-range": (["replay", "abc"], "bad range 'abc'"),
    "unknown-flag": (["vacuum", "--bogus"], "No such option '--bogus'"),
    "unknown-revision": (["db", "downgrade", "nosuch"], "there is no revision 'nosuch'"),
    "unknown-revision-up": (["db", "upgrade", "nosuch"], "there is no revision 'nosuch'; use"),
    "empty-query": (["sql", ""], "the query is empty; give one SQL statement"),
    "blank-query": (["sql", "  \n"], "the query is empty"),
    "untyped-param": (["sql", "-p", "n:int", "five", "SELECT :n"], "'five' is not an int"),
    "purge-without-policy": (["purge"], "say what to keep"),
    "bad-url": (["replay", "--db", "postgresql://u@h:port/x"], "--db is not a database URL"),
    "unknown-command": (["nosuch"], "No such command 'nosuch'"),
}

#: Commands run against a PostgreSQL server that is up but has no such database (vacuum
#: connects with asyncpg itself, the others through SQLAlchemy).
PG_MISSING_DATABASE = {"replay": ["replay"], "db-upgrade": ["db", "upgrade"], "vacuum": ["vacuum"]}


@dataclass
class Case:
    """One run of `python -m chatlog` in its own directory, and what it left behind."""

    args: list[str]
    cwd: Path
    before: dict[str, bytes | None] = field(default_factory=dict)
    result: subprocess.CompletedProcess[str] | None = None

    def after(self) -> dict[str, bytes | None]:
        return snapshot(self.cwd)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (``None`` for a directory)."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


def environment() -> dict[str, str]:
    """This environment without CHATLOG_* settings, which would change what a command opens."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CHATLOG_")}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m chatlog ARGS`, from scratch."""
    return subprocess.run(
        [sys.executable, "-m", "chatlog", *args],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def launch() -> None:
    """Run each job read from stdin as `python -m chatlog` in a child forked from here.

    chatlog is imported before the forks, so a child only does its command's own work. It runs
    ``chatlog/__main__.py`` as ``-m`` does and ends as the interpreter would: an uncaught
    exception goes to ``sys.excepthook`` (the traceback on stderr) and exits 1.
    """
    import chatlog.cli.main  # noqa: F401 - imported once, before the forks

    jobs = json.loads(sys.stdin.read())
    codes: list[int] = []
    for start in range(0, len(jobs), 8):
        pids = [_fork(job) for job in jobs[start : start + 8]]
        codes += [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    print(json.dumps(codes))


def _fork(job: dict[str, Any]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.chdir(job["cwd"])
        for fd, path in ((0, os.devnull), (1, job["out"]), (2, job["err"])):
            os.dup2(os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = ["chatlog", *job["args"]]
        runpy.run_module("chatlog", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        sys.excepthook(*sys.exc_info())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_all(cases: list[Case]) -> None:
    """Run every case at once through :func:`launch`; fill in each one's result."""
    jobs = [
        {"args": c.args, "cwd": str(c.cwd), "out": f"{c.cwd}.out", "err": f"{c.cwd}.err"}
        for c in cases
    ]
    launcher = subprocess.run(
        [sys.executable, "-c", "from tests.test_cli_errors import launch; launch()"],
        input=json.dumps(jobs),
        cwd=Path(__file__).resolve().parent.parent,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert launcher.returncode == 0, launcher.stderr
    for case, job, code in zip(cases, jobs, json.loads(launcher.stdout), strict=True):
        out, err = Path(job["out"]).read_text(), Path(job["err"]).read_text()
        case.result = subprocess.CompletedProcess(case.args, code, out, err)


#: Which commands each bad database is an error for (every command, unless listed here).
ERROR_FOR = {
    "missing-file": READERS,
    # An empty file is an empty database: db upgrade, import and serve make it a log.
    "empty-file": READERS,
    # db current reports the revision, db upgrade/downgrade move it, import and serve migrate.
    "old-schema-file": NEED_SCHEMA,
}
#: (bad database, command) for every pair that is an error.
BAD_DATABASE_CASES = [
    (bad, name) for bad in BAD for name in COMMANDS if name in ERROR_FOR.get(bad, COMMANDS)
]


def bad_database_case(root: Path, bad: str, name: str, export: Path, old: bytes) -> Case:
    """``COMMANDS[name]`` in a directory of its own holding the bad database ``bad``."""
    cwd = root / f"{bad}-{name}"
    cwd.mkdir()
    if bad == "junk-file":
        (cwd / "junk.db").write_bytes(JUNK)
    elif bad == "empty-file":
        (cwd / "empty.db").write_bytes(b"")
    elif bad == "old-schema-file":
        (cwd / "old.db").write_bytes(old)
    elif bad == "directory":
        (cwd / "adir").mkdir()
    db = {
        "junk-file": str(cwd / "junk.db"),
        "empty-file": str(cwd / "empty.db"),
        "old-schema-file": str(cwd / "old.db"),
        "directory": str(cwd / "adir"),
        "missing-file": str(cwd / "missing.db"),
        "unreachable-postgres": UNREACHABLE,
    }[bad]
    args = [a.replace("{export}", str(export)) for a in COMMANDS[name]]
    return Case([*args, "--db", db], cwd, snapshot(cwd))


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-message export file."""
    path = tmp_path_factory.mktemp("export") / "one.jsonl"
    path.write_bytes(ONE_ROW)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, export: Path) -> Path:
    """A good log holding that one message, made by `chatlog import` (read here, never written)."""
    path = tmp_path_factory.mktemp("good") / "good.db"
    made = run(["import", str(export), "--db", str(path)], path.parent)
    assert made.returncode == 0, made.stderr  # the hand-written export line is valid
    return path


@pytest.fixture(scope="module")
def old_schema(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a log migrated only to the first revision (one a newer chatlog replaced)."""
    path = tmp_path_factory.mktemp("old") / "old.db"
    made = run(["db", "upgrade", "0001", "--db", str(path)], path.parent)
    assert made.returncode == 0, made.stderr
    return path.read_bytes()


@pytest.fixture(scope="module")
def cases(
    tmp_path_factory: pytest.TempPathFactory, export: Path, good: Path, old_schema: bytes
) -> dict[str, Case]:
    """Every case of this module, run at once, each in a process of its own."""
    root = tmp_path_factory.mktemp("cli-errors")
    found = {
        f"{bad}/{name}": bad_database_case(root, bad, name, export, old_schema)
        for bad, name in BAD_DATABASE_CASES
    }
    for name, (args, _words) in USAGE.items():
        cwd = root / f"usage-{name}"
        cwd.mkdir()
        found[f"usage/{name}"] = Case(args if "--db" in args else [*args, "--db", str(good)], cwd)
    cwd = root / "export-to-missing-directory"
    cwd.mkdir()
    found["export-to-missing-directory"] = Case(
        ["export", "--db", str(good), "-o", str(cwd / "nowhere" / "out.jsonl")], cwd
    )
    if (server := server_url()) is not None:
        missing = make_url(server).set(database="chatlog_no_such_database")
        for name, command in PG_MISSING_DATABASE.items():
            cwd = root / f"missing-postgres-database-{name}"
            cwd.mkdir()
            db = missing.render_as_string(hide_password=False)
            found[f"missing-postgres-database/{name}"] = Case([*command, "--db", db], cwd)
    run_all(list(found.values()))
    return found


def assert_one_error_line(case: Case, exit_code: int, words: str) -> list[str]:
    """The policy's shape: the exit code, at most two lines, the first an `Error:` line."""
    result = case.result
    assert result is not None
    shown = f"{case.args}\n{result.stderr}"
    assert result.returncode == exit_code, shown
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("Error: "), shown
    assert "Traceback" not in result.stderr and "sqlalche.me" not in result.stderr, shown
    # No exception class names (OperationalError, FileNotFoundError, CommandError...) and no
    # temporary file names (tempfile's tmpXXXXXXXX, export's .NAME.XXXXXXXX beside -o).
    assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b", result.stderr), shown
    assert not re.search(r"\btmp[a-z0-9_]{8}\b|/\.[^/\s]+\.[a-z0-9_]{8}\b", result.stderr), shown
    assert words in result.stderr, shown
    assert result.stdout == "", shown
    return lines


@pytest.mark.parametrize("bad, name", BAD_DATABASE_CASES)
def test_bad_database_is_one_line_and_exit_1(cases: dict[str, Case], bad: str, name: str) -> None:
    """A junk file, a directory, a missing file or no PostgreSQL: one line, exit 1, no change."""
    case = cases[f"{bad}/{name}"]
    assert_one_error_line(case, 1, BAD[bad])
    # Nothing was written: the junk keeps its bytes, no -wal, -shm, database or temp file.
    after = case.after()
    if bad == "old-schema-file":
        # A real WAL log: any reader may leave SQLite's (empty) -wal and -shm beside it.
        after = {k: v for k, v in after.items() if not k.endswith(("-wal", "-shm"))}
    assert after == case.before, after.keys()


@pytest.mark.parametrize("name", list(USAGE))
def test_usage_mistake_is_one_line_and_exit_2(cases: dict[str, Case], name: str) -> None:
    """A bad flag, value, range or command: one line saying where the help is, exit 2."""
    assert_one_error_line(cases[f"usage/{name}"], 2, USAGE[name][1])


def test_export_error_names_the_file_asked_for(cases: dict[str, Case]) -> None:
    """An export that cannot be written names -o's path, never the temporary file beside it."""
    case = cases["export-to-missing-directory"]
    target = case.cwd / "nowhere" / "out.jsonl"
    lines = assert_one_error_line(case, 1, f"cannot use {target} (no such file or directory)")
    assert ".out.jsonl." not in lines[0]


@pytest.mark.parametrize("name", list(PG_MISSING_DATABASE))
def test_missing_postgres_database_is_one_line(cases: dict[str, Case], name: str) -> None:
    """A PostgreSQL server that is up but lacks the database: one line naming it, exit 1."""
    if server_url() is None:
        skip_or_fail(f"{POSTGRES_ENV} is not set: no PostgreSQL to test against")
    case = cases[f"missing-postgres-database/{name}"]
    assert_one_error_line(case, 1, "'chatlog_no_such_database' at ")
    assert "does not exist" in str(case.result and case.result.stderr)


def _wait_until(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, "never got ready"
        time.sleep(0.05)


def _has_open(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(fd) == str(path) for fd in fds.iterdir())
    except (FileNotFoundError, PermissionError):
        return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see open files")
def test_ctrl_c_stops_a_long_query_with_130(good: Path) -> None:
    """Ctrl-C during a long `sql` statement exits 130 at once, without a traceback."""
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatlog", "sql", endless, "--db", str(good)],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Once the file is open, the statement starts within milliseconds.
        _wait_until(proc, lambda: _has_open(proc.pid, good.resolve()))
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err


def test_ctrl_c_ends_follow_with_0(good: Path) -> None:
    """Ctrl-C is how `replay --follow` ends: exit 0, nothing on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatlog", "replay", "--follow", "--db", str(good)],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "<alice> hi" in proc.stdout.readline()  # the backlog is out: it now follows
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == "", err


def test_closed_pipe_ends_quietly(good: Path) -> None:
    """Output into a pipe nobody reads any more (`| head`) ends with exit 0 and no message."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatlog", "replay", "--db", str(good)],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the child has even started writing
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 0 and err == b"", err
