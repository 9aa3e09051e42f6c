"""The SQLite group commit: one transaction per batch, on a connection the writer owns.

The writer appends through a plain ``sqlite3`` connection of its own, served by one
dedicated thread, so a commit is one hop to that thread and back (through SQLAlchemy's async
layer it was about seven, about 1 ms of CPU per commit on the 2-vCPU box). A batch of a few
rows (light load) runs on the event loop's thread instead, with no hop at all
(:data:`INLINE_ROWS`); bigger ones go to the thread, where the fsync overlaps with reading
the next batch.

Batches with idempotency keys take the same path: inside the transaction, each ``Nonce`` is
looked up in the room's unique ``(room, nonce)`` index first, and a retry is answered with
its original row instead of being inserted (:func:`chatlog.log.model.plan_batch`). The page
sends a Nonce with every message, so this is the path browsers take.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from chatlog.log.model import (
    NewMessage,
    Originals,
    StoredMessage,
    nonce_keys,
    plan_batch,
    stored_batch,
    stored_fields,
    utcnow,
)
from chatlog.log.schema import STORED_TIME_FORMAT
from chatlog.log.sqlite import checkpoint, search
from chatlog.log.sqlite.engine import BUSY_TIMEOUT_MS, apply_pragmas

#: The insert of new messages.
INSERT = (
    "INSERT INTO messages (room, ws_id, author, message, text, raw, sent_at, nonce) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The IDs of the newest N rows: a batch's own, since the writer holds the write lock from
#: ``BEGIN IMMEDIATE`` and AUTOINCREMENT IDs only grow.
NEWEST_IDS = "SELECT id FROM messages ORDER BY id DESC LIMIT ?"
#: The stored originals of retried nonces, ``IN (`` a chunk of them ``)``: the unique index
#: ``(room, nonce)`` answers it (a row-value ``(room, nonce) IN (...)`` would scan the table).
ORIGINALS = (
    "SELECT id, ws_id, author, raw, sent_at, nonce, edited_at, deleted_at FROM messages "
    "WHERE room = ? AND nonce IN ("
)
#: Nonces per look-up, well under SQLite's limit of bound parameters.
ORIGINALS_CHUNK = 500

#: A batch of at most this many rows commits on the event loop's own thread. Under light load
#: a batch is one or two messages; the two hops to the thread and back then cost more (about
#: 0.1 ms of wake-ups, measured) than the insert itself, and nothing else is waiting for the
#: loop.
INLINE_ROWS = 8
#: Seconds a commit may take before the next small ones go to the thread too: a slow or
#: stalling disk must not freeze the event loop (reads, heartbeats, /healthz). Nor may another
#: process's write lock: an inline commit that finds it taken goes to the thread to wait.
INLINE_SLOW = 0.002


class SqliteCommitter:
    """The writer's own connection to one SQLite file, and the thread that serves it."""

    def __init__(self, path: Path | str, synchronous: str) -> None:
        # check_same_thread off: small batches commit on the loop's thread, the rest on the
        # writer thread; the writer never makes two calls at once.
        self.db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        apply_pragmas(self.db.execute, synchronous, readonly=False)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="chatlog-sqlite-writer")
        #: How long the last commit took; a slow disk sends commits back to the thread.
        self._last = 0.0
        #: Commits run on the event loop's thread and on the writer thread (for tests).
        self.inline = 0
        self.threaded = 0
        #: WAL checkpoints the writer ran itself (the background ones never found the WAL idle).
        self.checkpoints = 0

    async def _on_thread(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, func, *args)

    async def commit(self, batch: Sequence[NewMessage], sent_at: datetime) -> list[StoredMessage]:
        """Insert and commit ``batch``; a nonce stored before is answered with its original."""
        started = time.perf_counter()
        stored: list[StoredMessage] | None = None
        if len(batch) <= INLINE_ROWS and self._last < INLINE_SLOW:
            try:
                stored = commit_batch(self.db, batch, sent_at, wait=False)
            finally:
                self._last = time.perf_counter() - started
            if stored is not None:
                self.inline += 1
                return stored
        stored = await self._on_thread(commit_batch, self.db, batch, sent_at)
        self._last = time.perf_counter() - started
        self.threaded += 1
        assert stored is not None  # with wait=True it waits for the lock instead
        return stored

    async def checkpoint(self) -> None:
        """A WAL checkpoint on this connection, on its thread (the writer is between batches)."""
        await self._on_thread(checkpoint.checkpoint, self.db)
        self.checkpoints += 1

    async def truncate(self) -> bool:
        """A TRUNCATE checkpoint on this connection, after an erasure."""
        return bool(await self._on_thread(checkpoint.truncate, self.db))

    async def close(self) -> None:
        """Close the connection on its thread, then stop the thread."""
        await self._on_thread(self.db.close)
        self._thread.shutdown(wait=False)


def rows_of(batch: Sequence[NewMessage], sent_at: datetime) -> list[tuple[Any, ...]]:
    """The parameters of :data:`INSERT` for a batch, ``sent_at`` formatted once."""
    stamp = sent_at.strftime(STORED_TIME_FORMAT)
    return [(m.room, m.ws_id, m.author, m.body, m.text, m.raw, stamp, m.nonce) for m in batch]


def _originals(db: sqlite3.Connection, batch: Sequence[NewMessage]) -> Originals:
    """The stored originals of the batch's nonces: one indexed query per room and chunk."""
    by_room: dict[str, list[str]] = {}
    for room, nonce in nonce_keys(batch):
        by_room.setdefault(room, []).append(nonce)
    found: Originals = {}
    for room, nonces in by_room.items():
        for start in range(0, len(nonces), ORIGINALS_CHUNK):
            chunk = nonces[start : start + ORIGINALS_CHUNK]
            sql = ORIGINALS + ", ".join("?" * len(chunk)) + ")"
            for msg_id, ws_id, author, raw, sent_at, nonce, edited, deleted in db.execute(
                sql, (room, *chunk)
            ):
                found[(room, nonce)] = StoredMessage(
                    msg_id,
                    room,
                    ws_id,
                    author,
                    stored_fields(raw),
                    datetime.fromisoformat(sent_at),
                    edited_at=None if edited is None else datetime.fromisoformat(edited),
                    deleted_at=None if deleted is None else datetime.fromisoformat(deleted),
                )
    return found


def commit_batch(
    db: sqlite3.Connection, batch: Sequence[NewMessage], sent_at: datetime, *, wait: bool = True
) -> list[StoredMessage] | None:
    """One transaction; the stored rows in batch order.

    The writer is the only writer of the file and holds the write lock from ``BEGIN
    IMMEDIATE``, and AUTOINCREMENT IDs only grow, so the batch's rows are the newest of the
    table. With ``wait`` false (on the event loop's thread) it never waits for that lock: when
    another connection holds it (``chatlog purge``, ``vacuum`` or ``import`` beside the
    server) it returns ``None`` at once, and the caller retries on the thread, which waits.
    """
    if not _begin(db, wait):
        return None
    try:
        plan = plan_batch(batch, _originals(db, batch))
        ids: list[int] = []
        if plan.fresh:
            db.executemany(INSERT, rows_of(plan.fresh, sent_at))
            ids = [r[0] for r in db.execute(NEWEST_IDS, (len(plan.fresh),))]
            ids.reverse()
            search.index_sync(db, zip(ids, (m.text for m in plan.fresh), strict=True))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return stored_batch(batch, plan, ids, sent_at)


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


#: Commits between two checkpoints in :func:`time_commits` (a WAL of about 10 MB).
CYCLE = 200


def time_commits(path: Path, count: int, seconds: float) -> list[float]:
    """Seconds each of up to ``count`` one-message commits with a ``Nonce`` took (the page's
    path: look-up, insert, search index, ``COMMIT``), on a connection set up as the writer's,
    to the room ``bench-commit``. The WAL cycles in place as under the server: a checkpoint
    (not timed) every :data:`CYCLE` commits, after a first cycle not timed either, which
    makes the WAL file as long as a cycle needs (an ``fdatasync`` that also lengthens a file
    takes about 4x as long here)."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    apply_pragmas(db.execute, "FULL", readonly=False)
    checkpoint.take_over(db)  # as the server's writer: no checkpoint inside a COMMIT
    token = uuid.uuid4().hex[:8]

    def one(n: int) -> float:
        message = NewMessage(
            "bench-commit", "bench", "bench", "aGVsbG8=", f"hello {n}", "{}", {},
            nonce=f"{token}-{n}",
        )  # fmt: skip
        started = time.perf_counter()
        commit_batch(db, [message], utcnow())
        return time.perf_counter() - started

    samples: list[float] = []
    try:
        for n in range(CYCLE):
            one(n)
        deadline = time.perf_counter() + seconds
        while len(samples) < count and time.perf_counter() < deadline:
            if len(samples) % CYCLE == 0:
                checkpoint.checkpoint(db)
            samples.append(one(CYCLE + len(samples)))
    finally:
        db.close()
    return samples
