"""The SQLite group commit: one transaction per batch on the writer's own connection, nonces
included, all or nothing, and never blocking the event loop on a slow disk or a held lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from chatlog.log.model import NewMessage, utcnow
from chatlog.log.open import opened
from chatlog.log.sqlite import commit
from chatlog.log.sqlite.commit import SqliteCommitter
from chatlog.settings import database_url


def message(i: int, nonce: str | None = None, author: str = "a", room: str = "r") -> NewMessage:
    frame = f'{{"Message":"aGk=","N":{i}}}'
    return NewMessage(room, f"ws{i}", author, "aGk=", f"héllo {i}", frame, {"N": i}, nonce)


@pytest.fixture
async def committer(tmp_path: Path) -> AsyncIterator[SqliteCommitter]:
    """A migrated log file and the writer's own connection to it."""
    path = tmp_path / "c.db"
    async with opened(database_url(str(path))):
        pass
    own = SqliteCommitter(path, "FULL")
    try:
        yield own
    finally:
        await own.close()


def stored_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "select id, room, ws_id, author, message, text, raw, sent_at, nonce from messages"
        ).fetchall()


async def test_a_batch_reads_back_as_it_was_sent(
    committer: SqliteCommitter, tmp_path: Path
) -> None:
    """Every column is stored as given, sent_at in the stored format, IDs in batch order."""
    when = datetime(2026, 11, 25, 20, 21, 15, 409091)
    stored = await committer.commit([message(0), message(1, nonce="n1"), message(2)], when)
    assert [(m.id, m.ws_id, m.fields, m.duplicate) for m in stored] == [
        (1, "ws0", {"N": 0}, False),
        (2, "ws1", {"N": 1}, False),
        (3, "ws2", {"N": 2}, False),
    ]
    assert stored_rows(tmp_path / "c.db") == [
        (i + 1, "r", f"ws{i}", "a", "aGk=", f"héllo {i}", message(i).raw,
         "2026-11-25 20:21:15.409091", "n1" if i == 1 else None)
        for i in range(3)
    ]  # fmt: skip


async def test_a_retried_nonce_is_answered_with_its_original_and_stored_once(
    committer: SqliteCommitter, tmp_path: Path
) -> None:
    """A nonce already stored in the room, or repeated within one batch, is not inserted
    again: the retry gets the original's ID, author, fields and time, marked duplicate, and
    addressed to the retrying connection. The same nonce in another room is a new message."""
    first_at = datetime(2026, 1, 1, 12, 0, 0, 1)
    [original] = await committer.commit([message(0, nonce="k", author="alice")], first_at)
    batch = [
        message(7, nonce="k", author="mallory"),  # a retry of a stored one
        message(8, nonce="fresh"),
        message(9, nonce="fresh"),  # a retry inside the same batch
        message(10, nonce="k", room="other"),  # another room: not a retry
    ]
    stored = await committer.commit(batch, utcnow())
    assert stored[0].id == original.id and stored[0].duplicate
    assert stored[0].author == "alice" and stored[0].sent_at == first_at
    assert stored[0].fields == {"Message": "aGk=", "N": 0}, "the original's stored frame"
    assert stored[0].ws_id == "ws7"
    assert not stored[1].duplicate and stored[2].duplicate and stored[2].id == stored[1].id
    assert stored[2].ws_id == "ws9" and stored[2].fields == {"N": 8}
    assert not stored[3].duplicate and stored[3].room == "other"
    rows = stored_rows(tmp_path / "c.db")
    assert [(r[0], r[1], r[8]) for r in rows] == [
        (1, "r", "k"),
        (2, "r", "fresh"),
        (3, "other", "k"),
    ]


@pytest.mark.parametrize("size", [2, commit.INLINE_ROWS + 2], ids=["inline", "thread"])
async def test_a_failing_batch_is_rolled_back_whole(
    committer: SqliteCommitter, tmp_path: Path, size: int
) -> None:
    """A row the database refuses undoes its whole batch, on the loop's thread or the writer
    thread, nonce look-ups included; the next batch commits normally."""
    bad = [message(i, nonce=f"n{i}") for i in range(size - 1)]
    bad.append(message(size, author=None))  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        await committer.commit(bad, utcnow())
    [ok] = await committer.commit([message(2, nonce="n0")], utcnow())
    assert ok.fields == {"N": 2} and not ok.duplicate, "the rolled-back nonce was never stored"
    assert [r[5] for r in stored_rows(tmp_path / "c.db")] == ["héllo 2"]


async def test_small_batches_commit_on_the_loop_unless_the_disk_is_slow(
    committer: SqliteCommitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of up to INLINE_ROWS, nonces or not, skip the thread hop; bigger ones, and every
    one after a commit slower than INLINE_SLOW, run on the writer thread so a stalling disk
    cannot freeze the event loop."""
    threads: list[int] = []
    real = commit.commit_batch

    def recording(*args: object, **kwargs: object) -> object:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(commit, "commit_batch", recording)
    loop_thread = threading.get_ident()
    await committer.commit([message(0, nonce="page-1")], utcnow())
    await committer.commit([message(i) for i in range(commit.INLINE_ROWS + 1)], utcnow())
    monkeypatch.setattr(commit, "INLINE_SLOW", 0.0)  # every commit is now "slow"
    await committer.commit([message(1, nonce="page-2")], utcnow())
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread
    assert threads[2] == threads[1]
    assert (committer.inline, committer.threaded) == (1, 2)


async def test_a_write_lock_held_elsewhere_never_blocks_the_event_loop(
    committer: SqliteCommitter, tmp_path: Path
) -> None:
    """While another connection holds the write lock (a CLI purge, vacuum or import), a small
    batch does not wait on the loop's thread: the loop keeps running, the commit waits on the
    writer thread and lands once the lock is released."""
    holder = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    pending = asyncio.create_task(committer.commit([message(0, nonce="x")], utcnow()))
    ticks = 0
    for _ in range(10):  # the loop must keep turning while the lock is held
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 10 and not pending.done(), "the commit must wait, off the loop"
    holder.rollback()
    holder.close()
    [stored] = await pending
    assert stored.id == 1
    assert committer.threaded == 1
