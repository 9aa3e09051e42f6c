"""SQLite WAL checkpoints off the commit path.

By default SQLite checkpoints inside the ``COMMIT`` that grows the WAL past 1,000 pages: that
commit copies the pages into the database file and syncs it. At 1,000 msg/s that is one commit
in about 250, taking 1-2 ms instead of 0.2 (FULL) and several ms under NORMAL, and every
message queued behind it waits too. Measured with ``chatlog bench --rate 1000`` (README,
performance): commits over 1 ms in 8 s fell from 47 to 4, and under NORMAL the
send-to-receipt p99 fell from 3.2 to 1.0 ms.

So the writer turns automatic checkpoints off on its own connection and a :class:`Checkpointer`
runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a connection and thread of its own, at most every
:data:`EVERY` seconds while there are commits. A passive checkpoint never blocks the writer:
it copies what was committed when it started, and when it has copied everything before the
writer's next transaction, that transaction starts the WAL over from its beginning. Under
sustained load a commit lands during every checkpoint and the WAL keeps growing, so once it
passes :data:`WAL_LIMIT` pages the writer runs one checkpoint itself between two batches
(short: the background has copied most pages already), as SQLite's automatic one would. Same
mechanism, same guarantees; a crash mid-checkpoint is recovered from the WAL on the next open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

log = logging.getLogger(__name__)

#: Seconds between the starts of two checkpoints while commits keep coming.
EVERY = 0.2
#: WAL pages (4 KiB each) past which the writer checkpoints itself so the WAL starts over.
WAL_LIMIT = 4096


def take_over(db: sqlite3.Connection) -> str | None:
    """Turn automatic checkpoints off on the writer connection ``db``; return its file, or
    ``None`` for a database without one (in memory), which keeps SQLite's own checkpoints."""
    path = next((row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main"), "")
    if not path:
        return None
    db.execute("PRAGMA wal_autocheckpoint=0")
    return str(path)


def checkpoint(db: sqlite3.Connection) -> int:
    """One PASSIVE checkpoint; the WAL's length in pages (-1: not in WAL mode)."""
    _busy, pages, _copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(pages)


def truncate(db: sqlite3.Connection, attempts: int = 5) -> bool:
    """Scrub the files after an erasure, then a TRUNCATE checkpoint.

    The search index first: FTS5 (this SQLite has no ``secure-delete`` option) only marks an
    erased message's words as deleted, in a newer segment, and keeps them in the old one until
    the segments are merged, so ``optimize`` merges them all (its cost grows with the index:
    see the README). Then every page is copied into the database file (where
    ``secure_delete`` zeroed the erased bytes) and the WAL, which still holds the pages' older
    versions, is cut to zero bytes. It waits (``busy_timeout``) for readers of older
    snapshots; False when it still could not finish after ``attempts`` tries."""
    db.execute("PRAGMA secure_delete = ON")
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'").fetchone():
        db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
    for _ in range(attempts):
        busy, _pages, _copied = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
    log.warning("the WAL could not be truncated after an erasure (a reader held it)")
    return False


class Checkpointer:
    """Background PASSIVE checkpoints of one SQLite file, one at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = float("-inf")
        #: The WAL's length in pages when the last background checkpoint ended.
        self.wal_pages = 0
        #: Checkpoints run in the background, for tests.
        self.runs = 0
        self._failing = False

    def committed(self) -> bool:
        """After a commit: start a background checkpoint if one is due and none is running.
        True when the WAL has grown past :data:`WAL_LIMIT`: the writer should checkpoint
        itself now (:func:`checkpoint`)."""
        if self._task is not None and not self._task.done():
            return False
        if self.wal_pages > WAL_LIMIT:
            self.wal_pages = 0
            return True
        loop = asyncio.get_running_loop()
        if loop.time() - self._started >= EVERY:
            self._started = loop.time()
            self._task = loop.create_task(asyncio.to_thread(self._checkpoint))
        return False

    def _checkpoint(self) -> None:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self.wal_pages = checkpoint(self._conn)
            self.runs += 1
        except sqlite3.Error as exc:  # disk full, read-only: the WAL keeps the data; next time
            if not self._failing:  # once per episode, not five times a second
                log.warning("WAL checkpoints failing (the WAL keeps every commit): %s", exc)
            self._failing = True
        else:
            if self._failing:
                log.info("WAL checkpoints work again")
            self._failing = False

    async def close(self) -> None:
        """Wait for a running checkpoint, then close the connection."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if self._conn is not None:
            self._conn.close()
            self._conn = None
