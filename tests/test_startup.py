"""Each command imports only what it needs: ``chatlog --help`` no database or server library,
the history commands no aiohttp and no alembic; the lazy group's summaries stay true."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from chatlog.cli.main import COMMANDS, main
from chatlog.log import basics, migrate, schema
from tests.helpers import run_cli

#: What a command may pull in only when it needs it (top-level packages or chatlog's own).
HEAVY = (
    "aiohttp",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "chatlog.server",
    "chatlog.bench",
)

#: Runs ``chatlog ARGS`` as a user does, then writes which of HEAVY it had imported.
_PROBE = """
import atexit, sys
heavy, out = sys.argv[1].split(), sys.argv[2]
def report():
    loaded = {h for h in heavy for m in sys.modules if m == h or m.startswith(h + ".")}
    with open(out, "w") as f:
        f.write(" ".join(sorted(loaded)))
atexit.register(report)
from chatlog.cli.main import main
sys.argv = ["chatlog", *sys.argv[3:]]
main()
"""


def imported_by(tmp_path: Path, *args: str) -> set[str]:
    """The HEAVY modules ``chatlog ARGS`` imports in a fresh process (it must succeed)."""
    out = tmp_path / "modules.txt"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, " ".join(HEAVY), str(out), *args],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return set(out.read_text().split())


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    """A migrated SQLite log with a few messages."""
    path = tmp_path / "chat.db"
    assert run_cli("db", "upgrade", "--db", str(path)).exit_code == 0
    for text in ("one", "two", "three"):
        assert run_cli("broadcast", "--db", str(path), "--room", "lobby", text).exit_code == 0
    return path


def test_help_imports_no_database_or_server_library(tmp_path: Path) -> None:
    """`chatlog --help` lists the commands without importing SQLAlchemy, alembic or aiohttp."""
    assert imported_by(tmp_path, "--help") == set()


#: What reading a SQLite log must not import, per command: replay, sql and export read the
#: file with the driver alone; the rest may use SQLAlchemy, never the server or alembic.
NOT_FOR_READS = {"aiohttp", "alembic", "chatlog.server", "chatlog.bench"}


@pytest.mark.parametrize(
    "args, forbidden",
    [
        (("replay", "1..10"), {*NOT_FOR_READS, "sqlalchemy"}),
        (("sql", "select 1"), {*NOT_FOR_READS, "sqlalchemy"}),
        (("export",), {*NOT_FOR_READS, "sqlalchemy"}),
        (("search", "two"), NOT_FOR_READS),
        (("db", "current"), NOT_FOR_READS),
    ],
)
def test_history_commands_import_only_what_they_need(
    tmp_path: Path, log_file: Path, args: tuple[str, ...], forbidden: set[str]
) -> None:
    """Reading a SQLite log imports neither the server, the bench nor alembic; replay, sql and
    export not even SQLAlchemy."""
    loaded = imported_by(tmp_path, *args, "--db", str(log_file))
    assert loaded & forbidden == set()
    assert "aiosqlite" in loaded  # the probe sees what the command imported


def test_migrating_imports_alembic(tmp_path: Path) -> None:
    """`chatlog db upgrade` does load alembic: the probe would notice one that was there."""
    assert "alembic" in imported_by(tmp_path, "db", "upgrade", "--db", str(tmp_path / "n.db"))


def test_summaries_equal_each_commands_own() -> None:
    """The summary table in chatlog/cli/main.py says what each command's own help says."""
    for name, lazy in COMMANDS.items():
        command = lazy.load()
        assert command.name == name
        assert lazy.summary == command.get_short_help_str(1000), name


def test_help_lists_every_command_with_its_summary() -> None:
    """`chatlog --help` shows each command with its whole one-line summary."""
    shown = " ".join(run_cli("--help").stdout.split())
    for name, lazy in COMMANDS.items():
        assert f"{name} {lazy.summary}" in shown, name
    assert main.list_commands(main.make_context("chatlog", ["--help"], resilient_parsing=True))


def test_the_column_names_known_without_sqlalchemy_are_the_tables() -> None:
    """chatlog.log.basics names the columns of the messages table, in its order."""
    assert tuple(c.name for c in schema.messages.columns) == basics.COLUMNS


def test_the_head_known_without_alembic_is_alembics() -> None:
    """The revisions read from the scripts are alembic's, oldest first, ending at its head."""
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    assert migrate.head() == scripts.get_current_head()
    walked = tuple(reversed([s.revision for s in scripts.walk_revisions()]))
    assert migrate.revisions() == walked
