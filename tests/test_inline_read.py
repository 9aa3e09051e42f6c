"""The SQLite read on the calling thread (replay, export) keeps the read-only guards of the
aiosqlite one, and Ctrl-C still stops a statement that runs long inside it."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatlog.log.sqlite.inline import InlineReadOnly
from chatlog.log.sqlite.lite import SqliteFile
from tests.helpers import run_cli


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "chat.db"
    assert run_cli("db", "upgrade", "--db", str(path)).exit_code == 0
    assert run_cli("broadcast", "--db", str(path), "--room", "lobby", "hi").exit_code == 0
    return path


async def test_an_inline_read_refuses_what_the_aiosqlite_read_refuses(db: Path) -> None:
    """Writes, ATTACH and leaking functions fail; reads answer, on the calling thread."""
    log = SqliteFile(f"sqlite+aiosqlite:///{db}", str(db), inline=True)
    async with log.read_only() as reader:
        assert isinstance(reader, InlineReadOnly)
        assert await reader.scalar("SELECT count(*) FROM messages") == 1
        for statement in (
            "DELETE FROM messages",
            f"ATTACH '{db.parent / 'other.db'}' AS other",
            "PRAGMA journal_mode=DELETE",
        ):
            with pytest.raises(sqlite3.DatabaseError):
                await reader.scalar(statement)
        with pytest.raises(sqlite3.DatabaseError, match=r"function fts3_tokenizer\(\) is refused"):
            await reader.scalar("SELECT fts3_tokenizer('simple')")
    assert not (db.parent / "other.db").exists()
    async with log.read_only(limit_s=5) as timed:
        assert not isinstance(timed, InlineReadOnly)  # a time limit needs aiosqlite's timer


#: Runs an endless statement in an inline read under asyncio.run, as the CLI does.
_ENDLESS = """
import asyncio, sys
from chatlog.log.sqlite.lite import SqliteFile

async def main():
    log = SqliteFile("sqlite+aiosqlite:///" + sys.argv[1], sys.argv[1], inline=True)
    async with log.read_only() as reader:
        print("running", flush=True)
        sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
        async for _batch in reader.batches(sql):
            pass

try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_stops_a_long_statement_of_an_inline_read(db: Path) -> None:
    """Ctrl-C during one endless statement ends it within a second, as a KeyboardInterrupt."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _ENDLESS, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "running\n"
        time.sleep(0.3)
        began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        stopped = time.monotonic() - began
    finally:
        proc.kill()
    assert (proc.returncode, out, err) == (0, "interrupted\n", "")
    assert stopped < 1.0
