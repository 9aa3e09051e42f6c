"""A group commit on SQLite in one round trip to the database thread.

Through SQLAlchemy's async layer a commit of a batch takes about seven awaited round trips
to aiosqlite's worker thread (``BEGIN IMMEDIATE``, cursor, ``executemany``, cursor, the ID
read, its fetch, ``COMMIT``). Profiled on the 2-vCPU box this costs about 1 ms of CPU per
commit, which is most of the server's CPU at light load (one commit per few messages).
Here the whole transaction runs as one function on aiosqlite's own thread, against the very
``sqlite3`` connection SQLAlchemy holds, so a commit is one hop; a batch of a few rows (light
load) runs on the event loop's thread instead, with no hop at all (:data:`INLINE_ROWS`).

It covers the common case only: a batch in which no message carries a ``Nonce`` (an
idempotent retry needs the duplicate look-up of :func:`chatlog.log.store.insert_messages`).
For anything else, or an aiosqlite without the internals used, the caller takes the
SQLAlchemy path. Same rows, same IDs, same durability: ``COMMIT`` returns before
anything is fanned out.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log.db import BUSY_TIMEOUT_MS
from chatlog.log.schema import STORED_TIME_FORMAT
from chatlog.log.sqlite import checkpoint

if TYPE_CHECKING:
    from chatlog.log.store import NewMessage, StoredMessage

#: The SQLite insert of new messages, shared with :func:`chatlog.log.store.insert_messages`.
SQLITE_INSERT = (
    "INSERT INTO messages (room, ws_id, author, message, text, raw, sent_at, nonce) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The IDs of the newest N rows: a batch's own, since the writer holds the write lock from
#: ``BEGIN IMMEDIATE`` and AUTOINCREMENT IDs only grow.
NEWEST_IDS = "SELECT id FROM messages ORDER BY id DESC LIMIT ?"


def sqlite_rows(batch: Sequence[NewMessage], sent_at: datetime) -> list[tuple[Any, ...]]:
    """The parameters of :data:`SQLITE_INSERT` for a batch, ``sent_at`` formatted once."""
    stamp = sent_at.strftime(STORED_TIME_FORMAT)
    return [(m.room, m.ws_id, m.author, m.body, m.text, m.raw, stamp, m.nonce) for m in batch]


#: A batch of at most this many rows commits on the event loop's own thread. Under light load
#: a batch is one or two messages; the two hops to aiosqlite's thread and back then cost more
#: (about 0.1 ms of wake-ups, measured) than the insert itself, and nothing else is waiting
#: for the loop. Under load batches grow past this and go to the thread, where the fsync
#: overlaps with reading the next batch.
INLINE_ROWS = 8
#: Seconds a commit may take before the next small ones go to the thread too: a slow or
#: stalling disk must not freeze the event loop (reads, heartbeats, /healthz). Nor may another
#: process's write lock: an inline commit that finds it taken goes to the thread to wait.
INLINE_SLOW = 0.002


class SqliteCommitter:
    """The one-hop commit on one writer connection (from :func:`committer`)."""

    def __init__(self, run: Any, db: sqlite3.Connection) -> None:
        self._run = run
        self.db = db
        #: How long the last commit took; a slow disk sends commits back to the thread.
        self._last = 0.0

    async def commit(
        self, batch: Sequence[NewMessage], sent_at: datetime
    ) -> list[StoredMessage] | None:
        """Insert and commit ``batch``, or return ``None`` when it holds a ``Nonce``."""
        if any(m.nonce is not None for m in batch):
            return None
        rows = sqlite_rows(batch, sent_at)
        started = time.perf_counter()
        ids: list[int] | None = None
        if len(rows) <= INLINE_ROWS and self._last < INLINE_SLOW:
            try:
                ids = _commit_sync(self.db, rows, wait=False)
            finally:
                self._last = time.perf_counter() - started
        if ids is None:
            ids = await self._run(_commit_sync, self.db, rows)
            self._last = time.perf_counter() - started
        from chatlog.log.store import StoredMessage

        return [
            StoredMessage(msg_id, m.room, m.ws_id, m.author, m.fields, sent_at)
            for msg_id, m in zip(ids, batch, strict=True)
        ]

    async def checkpoint(self) -> None:
        """A WAL checkpoint on this connection, on its thread (the writer is between batches)."""
        await self._run(checkpoint.checkpoint, self.db)


async def committer(conn: AsyncConnection) -> SqliteCommitter | None:
    """The one-hop committer for the writer's connection ``conn``, or ``None`` off SQLite.

    Uses aiosqlite's "run this on the connection's thread" and its ``sqlite3`` connection:
    private API (``Connection._execute`` and ``Connection._conn``, stable since 0.17), the
    one place this module depends on it. Missing, the caller keeps the SQLAlchemy path.
    The connection is opened with ``check_same_thread=False`` (:func:`chatlog.log.db.make_engine`)
    so small batches may run on the loop's thread; the writer never overlaps two calls.
    """
    if conn.dialect.name != "sqlite":
        return None
    raw = await conn.get_raw_connection()
    driver = getattr(raw, "driver_connection", None)
    run = getattr(driver, "_execute", None)
    try:
        db = getattr(driver, "_conn", None)
    except ValueError:  # aiosqlite raises when the connection is closed
        return None
    if not callable(run) or not isinstance(db, sqlite3.Connection):
        return None
    return SqliteCommitter(run, db)


def _commit_sync(
    db: sqlite3.Connection, rows: list[tuple[Any, ...]], *, wait: bool = True
) -> list[int] | None:
    """One transaction; the batch's IDs in insertion order.

    The writer is the only writer and holds the write lock from ``BEGIN IMMEDIATE``, and
    AUTOINCREMENT IDs only grow, so the batch's rows are the newest ``len(rows)`` of the table.
    With ``wait`` false (on the event loop's thread) it never waits for that lock: when another
    connection holds it (``chatlog purge``, ``vacuum`` or ``import`` beside the server) it
    returns ``None`` at once, and the caller retries on the database thread, which waits.
    """
    if not _begin(db, wait):
        return None
    try:
        db.executemany(SQLITE_INSERT, rows)
        ids = [r[0] for r in db.execute(NEWEST_IDS, (len(rows),))]
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    ids.reverse()
    return ids


def _begin(db: sqlite3.Connection, wait: bool) -> bool:
    """``BEGIN IMMEDIATE``; without ``wait``, False instead of waiting for a busy lock."""
    if wait:
        db.execute("BEGIN IMMEDIATE")
        return True
    db.execute("PRAGMA busy_timeout=0")
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY:
            raise
        return False
    finally:
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return True
