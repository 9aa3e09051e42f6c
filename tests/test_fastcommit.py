"""The one-hop SQLite group commit: same rows as the SQLAlchemy path, all or nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from chatlog.log import db, store
from chatlog.log.schema import messages
from chatlog.log.sqlite import commit as fastcommit
from chatlog.log.store import NewMessage
from chatlog.settings import database_url


def message(i: int, nonce: str | None = None, author: str = "a") -> NewMessage:
    frame = f'{{"Message":"aGk=","N":{i}}}'
    return NewMessage("r", f"ws{i}", author, "aGk=", f"héllo {i}", frame, {"N": i}, nonce)


async def test_fast_and_sqlalchemy_paths_store_the_same_rows(tmp_path: Path) -> None:
    """A batch committed in one hop reads back like one committed through SQLAlchemy."""
    when = datetime(2026, 11, 25, 20, 21, 15, 409091)
    engine_cm = db.open_engine(database_url(str(tmp_path / "f.db")))
    async with engine_cm as engine, engine.connect() as conn:
        conn = await conn.execution_options(immediate=True)
        async with conn.begin():
            slow = await store.insert_messages(conn, [message(0), message(1)], when)
        committer = await fastcommit.committer(conn)
        assert committer is not None
        fast = await committer.commit([message(2), message(3), message(4)], when)
        assert fast is not None
        assert [m.id for m in slow + fast] == [1, 2, 3, 4, 5]
        assert [(m.ws_id, m.fields) for m in fast] == [(f"ws{i}", {"N": i}) for i in (2, 3, 4)]
        rows = (await conn.execute(select(messages).order_by(messages.c.id))).all()
    assert [r.sent_at for r in rows] == [when] * 5
    assert [(r.room, r.author, r.message, r.text, r.nonce) for r in rows] == [
        ("r", "a", "aGk=", f"héllo {i}", None) for i in range(5)
    ]
    assert [r.raw for r in rows] == [message(i).raw for i in range(5)]


async def test_batches_with_a_nonce_take_the_sqlalchemy_path(tmp_path: Path) -> None:
    """The committer declines a batch holding a Nonce (the duplicate look-up lives elsewhere)."""
    engine_cm = db.open_engine(database_url(str(tmp_path / "n.db")))
    async with engine_cm as engine, engine.connect() as conn:
        committer = await fastcommit.committer(conn)
        assert committer is not None
        batch = [message(0), message(1, nonce="k")]
        assert await committer.commit(batch, store.utcnow()) is None


@pytest.mark.parametrize("size", [2, fastcommit.INLINE_ROWS + 2], ids=["inline", "thread"])
async def test_a_failing_batch_is_rolled_back_whole(tmp_path: Path, size: int) -> None:
    """A row the database refuses undoes its whole batch, on the loop's thread or aiosqlite's;
    the next batch commits normally."""
    path = tmp_path / "x.db"
    async with db.open_engine(database_url(str(path))) as engine, engine.connect() as conn:
        committer = await fastcommit.committer(conn)
        assert committer is not None
        bad = [message(i) for i in range(size - 1)] + [message(size, author=None)]  # type: ignore[arg-type]
        with pytest.raises(sqlite3.IntegrityError):
            await committer.commit(bad, store.utcnow())
        ok = await committer.commit([message(2)], store.utcnow())
        assert ok is not None and ok[0].fields == {"N": 2}
    with sqlite3.connect(path) as check:
        assert check.execute("select text from messages").fetchall() == [("héllo 2",)]


async def test_small_batches_commit_on_the_loop_unless_the_disk_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of up to INLINE_ROWS skip the thread hop; bigger ones, and every one after a
    commit slower than INLINE_SLOW, run on aiosqlite's thread so a stalling disk cannot
    freeze the event loop."""
    threads: list[int] = []
    real = fastcommit._commit_sync

    def recording(
        db: sqlite3.Connection, rows: list[tuple[object, ...]], *, wait: bool = True
    ) -> list[int] | None:
        threads.append(threading.get_ident())
        return real(db, rows, wait=wait)

    monkeypatch.setattr(fastcommit, "_commit_sync", recording)
    loop_thread = threading.get_ident()
    engine_cm = db.open_engine(database_url(str(tmp_path / "t.db")))
    async with engine_cm as engine, engine.connect() as conn:
        committer = await fastcommit.committer(conn)
        assert committer is not None
        await committer.commit([message(0)], store.utcnow())
        big = [message(i) for i in range(fastcommit.INLINE_ROWS + 1)]
        await committer.commit(big, store.utcnow())
        monkeypatch.setattr(fastcommit, "INLINE_SLOW", 0.0)  # every commit is now "slow"
        await committer.commit([message(1)], store.utcnow())
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread
    assert threads[2] == threads[1]


async def test_a_write_lock_held_elsewhere_never_blocks_the_event_loop(tmp_path: Path) -> None:
    """While another connection holds the write lock (a CLI purge, vacuum or import), a small
    batch does not wait on the loop's thread: the loop keeps running, the commit waits on
    aiosqlite's thread and lands once the lock is released."""
    path = tmp_path / "l.db"
    engine_cm = db.open_engine(database_url(str(path)))
    async with engine_cm as engine, engine.connect() as conn:
        committer = await fastcommit.committer(conn)
        assert committer is not None
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        pending = asyncio.create_task(committer.commit([message(0)], store.utcnow()))
        ticks = 0
        for _ in range(10):  # the loop must keep turning while the lock is held
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 10 and not pending.done(), "the commit must wait, off the loop"
        holder.rollback()
        holder.close()
        stored = await pending
    assert stored is not None and [m.id for m in stored] == [1]
