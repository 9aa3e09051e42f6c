"""The single writer on a real SQLite file: group commit, ordering, failure isolation."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log import presence
from chatlog.log.model import NewMessage, StoredMessage
from chatlog.log.open import open_log, opened
from chatlog.log.writer import Writer, WriterClosed
from chatlog.settings import database_url


def message(i: int) -> NewMessage:
    return NewMessage("main", "ws", "a", "aGk=", f"t{i}", '{"Message":"aGk="}', {"Message": "aGk="})


async def test_group_commit_and_failing_op_isolation(tmp_path: Path) -> None:
    """Messages queued together commit in few transactions, in order; a failing op in a run of
    ops is refused alone while the ops around it are committed."""
    path = tmp_path / "w.db"
    committed: list[list[StoredMessage]] = []
    async with opened(database_url(str(path))) as log:
        writer = Writer(log, committed.append, lambda *_: None, batch_max=1000)
        await writer.start()
        await asyncio.gather(*(writer.append(message(i)) for i in range(500)))

        async def boom(conn: AsyncConnection) -> None:
            await conn.execute(text("insert into nope values (1)"))

        futures = [
            await writer.submit(presence.record_error("a", "first", "kept")),
            await writer.submit(boom),
            await writer.submit(presence.record_error("b", "second", "kept")),
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        await writer.close()
    ids = [m.id for batch in committed for m in batch]
    assert ids == list(range(1, 501))
    assert len(committed) < 50, "500 messages queued together must share commits"
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception)
    with sqlite3.connect(path) as conn:
        assert conn.execute("select kind from errors order by id").fetchall() == [
            ("first",),
            ("second",),
        ]


async def test_closed_writer_refuses(tmp_path: Path) -> None:
    """After close, appends are refused instead of being silently dropped."""
    async with opened(database_url(str(tmp_path / "c.db"))) as log:
        writer = Writer(log, lambda _: None, lambda *_: None)
        await writer.start()
        await writer.close()
        with pytest.raises(WriterClosed):
            await writer.append(message(0))


async def test_close_gives_up_on_an_unreachable_database(tmp_path: Path) -> None:
    """A writer whose database is gone still stops within its grace period."""
    # A log whose file cannot be opened: its directory is removed after the check at open.
    (tmp_path / "gone").mkdir()
    broken = open_log(database_url(str(tmp_path / "gone" / "x.db")))
    (tmp_path / "gone").rmdir()
    writer = Writer(broken, lambda _: None, lambda *_: None)
    await writer.start()
    await writer.append(message(1))
    await asyncio.wait_for(writer.close(grace=0.5), 5)
    # A connect attempt cancelled mid-way still finishes on aiosqlite's thread: let it, so it
    # does not report to a closed loop after the test.
    await asyncio.sleep(0.2)
    await broken.dispose()
