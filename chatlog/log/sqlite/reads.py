"""The server's reads of a SQLite log on plain ``sqlite3`` connections (no SQLAlchemy).

A resume or ``History`` is a few small indexed queries. Through SQLAlchemy's async layer and
aiosqlite each cost about 1 ms (several hops between the event loop and aiosqlite's thread);
here a small read (at most :data:`INLINE_ROWS` rows) runs on the event loop's own thread,
with no hop at all, as the writer's small commits do (:mod:`chatlog.log.sqlite.commit`), and
larger ones take one hop to a small pool of reader threads.

A read on the loop's thread must not freeze it. A WAL reader takes no lock a writer holds,
but a cold page cache, a slow disk or a lock held by a recovery could still make it slow, so:

* it never waits for a lock: its connection runs with ``busy_timeout=0``, and a busy read
  is asked again on a thread, which waits the usual :data:`BUSY_TIMEOUT_MS`;
* SQLite interrupts it (a progress handler) once it has run :data:`INLINE_SLOW` seconds,
  and it is asked again on a thread;
* after a read that took longer than that, the next ones go to the threads until one is
  fast again (a slow disk stays slow for a while).

Connections are opened as the engine opens its read-only ones (the pragmas of
:func:`~chatlog.log.sqlite.engine.apply_pragmas`, ``query_only``), kept in a small pool,
and each view reads in one deferred transaction, as the Core view did: the greeting's head
and user list, or a ``History`` range and its floor, come from one snapshot. ``sqlite3``
caches each connection's prepared statements by SQL text.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from chatlog.log.basics import COLUMNS, STORED_TIME_FORMAT
from chatlog.log.model import StoredMessage
from chatlog.log.queries import MESSAGE_SQL, LogView, stored_tuples
from chatlog.log.search import TIMES, SearchRequest, SearchRow, statement
from chatlog.log.sqlite.engine import BUSY_TIMEOUT_MS, apply_pragmas, file_uri
from chatlog.log.sqlite.search import SqliteSearch

T = TypeVar("T")

#: A read of at most this many rows runs on the event loop's thread (a greeting, a resume's
#: first page, a ``History`` page of the default 50); a bigger one on a reader thread.
INLINE_ROWS: Final = 100
#: Seconds an inline read may run before SQLite interrupts it and a thread takes it over;
#: after one this slow the next ones go to the threads.
INLINE_SLOW: Final = 0.002
#: SQLite's virtual-machine steps between two looks at the clock (a few microseconds).
PROGRESS_STEPS: Final = 1000
#: Idle connections kept open, and the reader threads.
POOL: Final = 4
THREADS: Final = 2

_HEAD = "SELECT max(id) FROM messages WHERE room = ?"
_ALIASES = (
    "SELECT users.alias FROM users JOIN websocket_connections "
    "ON websocket_connections.ws_id = users.ws_id WHERE users.room = ? "
    "ORDER BY websocket_connections.opened_at, websocket_connections.ws_id"
)
_FLOOR = "SELECT purged_through FROM retention WHERE room = ?"
_AFTER = (
    f"SELECT {MESSAGE_SQL} FROM messages WHERE room = ? AND id > ? AND id <= ? ORDER BY id LIMIT ?"
)
_AFTER_CHAT = (
    f"SELECT {MESSAGE_SQL} FROM messages WHERE room = ? AND id > ? AND id <= ? "
    "AND kind = 'chat' ORDER BY id LIMIT ?"
)
_BEFORE = (
    f"SELECT {MESSAGE_SQL} FROM messages WHERE room = ? AND kind = 'chat' AND id < ? "
    "ORDER BY id DESC LIMIT ?"
)
_IDS_BEFORE = (
    "SELECT id FROM messages WHERE room = ? AND kind = 'chat' AND id < ? ORDER BY id DESC LIMIT ?"
)
#: The (limit+1)-th ID of the range, if there is one: OFFSET skips index entries without
#: handing them up (0.3 ms for 10,000 where counting them in a subquery took 0.7 ms).
_BEYOND = (
    "SELECT id FROM messages WHERE room = ? AND id > ? AND id <= ? ORDER BY id LIMIT 1 OFFSET ?"
)
_INDEX: Final = SqliteSearch()
#: Above any message ID (``before=None``: from the room's end).
_TOP: Final = 2**63 - 1


class _Connection(sqlite3.Connection):
    """A pooled read connection; ``deadline`` is when an inline read is interrupted."""

    deadline = math.inf

    def past_deadline(self) -> bool:
        return time.perf_counter() > self.deadline


def when(value: str) -> datetime:
    """A stored timestamp (:data:`~chatlog.log.basics.STORED_TIME_FORMAT`) as a datetime."""
    return datetime.fromisoformat(value)


class SqliteReads:
    """The pool of read connections to one SQLite file, and its reader threads."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self._uri = file_uri(path, readonly=readonly)
        self._idle: list[_Connection] = []
        self._threads: ThreadPoolExecutor | None = None
        self._closed = False
        #: How long the last read took; a slow one sends the next ones to the threads.
        self._last = 0.0
        #: Reads run on the event loop's thread, and on a reader thread (for tests).
        self.inline = 0
        self.threaded = 0

    def _open(self) -> _Connection:
        db = sqlite3.connect(
            self._uri,
            uri=True,
            timeout=0,
            isolation_level=None,
            check_same_thread=False,  # used by one view at a time, on the loop or a thread
            factory=_Connection,
        )
        try:
            apply_pragmas(db.execute, "FULL", readonly=True)
            db.execute("PRAGMA busy_timeout=0")  # inline reads never wait; see _waiting
            db.set_progress_handler(db.past_deadline, PROGRESS_STEPS)
        except BaseException:
            db.close()
            raise
        assert isinstance(db, _Connection)
        return db

    @asynccontextmanager
    async def view(self) -> AsyncIterator[SqliteView]:
        """One view on a pooled connection, in one read transaction."""
        db = self._idle.pop() if self._idle else self._open()
        view = SqliteView(self, db)
        try:
            yield view
        finally:
            pending = view.pending
            if pending is not None and not pending.done():
                # Cancelled while a thread reads on it (the thread runs on regardless): stop
                # that read, and reuse the connection only once the thread is done with it.
                db.interrupt()
                loop = asyncio.get_running_loop()
                pending.add_done_callback(lambda _: _call_soon(loop, self._release, db))
            else:
                self._release(db)

    def _release(self, db: _Connection) -> None:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")  # read-only: nothing to keep
        except sqlite3.Error:
            db.close()
            return
        if len(self._idle) < POOL and not self._closed:
            self._idle.append(db)
        else:
            db.close()

    async def run(
        self,
        view: SqliteView,
        rows: int,
        read: Callable[[sqlite3.Connection], T],
        *,
        timed: bool = True,
    ) -> T:
        """``read(db)`` on the view's connection: inline when small and the disk is fast,
        else (or when it turns out slow or busy) on a reader thread."""
        db = view.db
        if rows <= INLINE_ROWS and self._last < INLINE_SLOW:
            started = time.perf_counter()
            db.deadline = started + INLINE_SLOW
            try:
                if not db.in_transaction:
                    db.execute("BEGIN")
                result = read(db)
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                if code not in (sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_BUSY):
                    raise
            else:
                self._last = time.perf_counter() - started
                self.inline += 1
                return result
            finally:
                db.deadline = math.inf
        started = time.perf_counter()
        if self._threads is None:
            self._threads = ThreadPoolExecutor(THREADS, thread_name_prefix="chatlog-sqlite-read")
        # The thread's own future, not the loop's wrapper: cancelling the wrapper does not
        # stop a read that is running (see view()).
        view.pending = self._threads.submit(_waiting, db, read)
        result = await asyncio.wrap_future(view.pending)
        view.pending = None
        if timed:
            self._last = time.perf_counter() - started
        self.threaded += 1
        return result

    def close(self) -> None:
        """Close the idle connections and stop the threads (views still open close theirs
        as they end)."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None


def _call_soon(
    loop: asyncio.AbstractEventLoop, func: Callable[[_Connection], None], db: Any
) -> None:
    """From a reader thread: ``func(db)`` on the loop (closing ``db`` if the loop is gone)."""
    try:
        loop.call_soon_threadsafe(func, db)
    except RuntimeError:
        db.close()


def _waiting(db: sqlite3.Connection, read: Callable[[sqlite3.Connection], T]) -> T:
    """On a reader thread: ``read``, waiting for a busy lock as every connection does."""
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        if not db.in_transaction:
            db.execute("BEGIN")
        return read(db)
    finally:
        db.execute("PRAGMA busy_timeout=0")


def _scalar(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    row = db.execute(sql, params).fetchone()
    return None if row is None else row[0]


class SqliteView(LogView):
    """The reads on one pooled ``sqlite3`` connection (see the module docstring)."""

    def __init__(self, reads: SqliteReads, db: _Connection) -> None:
        self.reads = reads
        self.db = db
        #: A read running on a thread (the connection is busy until it is done).
        self.pending: Future[Any] | None = None

    async def room_head(self, room: str) -> int:
        return int(await self.reads.run(self, 1, lambda db: _scalar(db, _HEAD, (room,))) or 0)

    async def room_aliases(self, room: str) -> list[str]:
        def read(db: sqlite3.Connection) -> list[str]:
            return [r[0] for r in db.execute(_ALIASES, (room,))]

        return await self.reads.run(self, 1, read)

    async def room_floor(self, room: str) -> int:
        return int(await self.reads.run(self, 1, lambda db: _scalar(db, _FLOOR, (room,))) or 0)

    async def after(
        self, room: str, after: int, upto: int, limit: int, *, chat_only: bool = False
    ) -> list[StoredMessage]:
        sql = _AFTER_CHAT if chat_only else _AFTER

        def read(db: sqlite3.Connection) -> list[StoredMessage]:
            return stored_tuples(db.execute(sql, (room, after, upto, limit)), when)

        # IDs are unique: the range bounds the rows as well (a backlog's last, empty page).
        return await self.reads.run(self, min(limit, max(0, upto - after)), read)

    async def before(self, room: str, before: int | None, limit: int) -> list[StoredMessage]:
        top = _TOP if before is None else before

        def read(db: sqlite3.Connection) -> list[StoredMessage]:
            rows = db.execute(_BEFORE, (room, top, limit)).fetchall()
            rows.reverse()
            return stored_tuples(rows, when)

        return await self.reads.run(self, limit, read)

    async def ids_before(self, room: str, before: int | None, limit: int) -> list[int]:
        top = _TOP if before is None else before

        def read(db: sqlite3.Connection) -> list[int]:
            return [r[0] for r in db.execute(_IDS_BEFORE, (room, top, limit))]

        # IDs only: even a page of 500 is one index walk of microseconds.
        return await self.reads.run(self, min(limit, INLINE_ROWS), read)

    async def more_than(self, room: str, after: int, upto: int, limit: int) -> bool:
        def read(db: sqlite3.Connection) -> bool:
            return db.execute(_BEYOND, (room, after, upto, limit)).fetchone() is not None

        # Index entries only, nothing decoded: about a hundred of them cost what one row does.
        return await self.reads.run(self, limit // 100, read)

    async def search(self, request: SearchRequest) -> list[Any]:
        return await search(self, request, self.reads)


async def search(view: SqliteView, request: SearchRequest, reads: SqliteReads) -> list[Any]:
    """A search on the view's connection: the index's own SQL (``:name`` parameters, which
    ``sqlite3`` takes as they are), timestamps bound as they are stored."""
    sql, params = statement(request, _INDEX.match(request.query))
    for name in TIMES:
        if name in params:
            params[name] = params[name].strftime(STORED_TIME_FORMAT)
    times = [COLUMNS.index(c) for c in ("sent_at", "edited_at", "deleted_at")]

    def read(db: sqlite3.Connection) -> list[Any]:
        out = []
        for row in db.execute(sql, params):
            values = list(row)
            for i in times:
                if values[i] is not None:
                    values[i] = when(values[i])
            out.append(SearchRow(*values))
        return out

    # A search walks the index until it has its hits: always on a thread (it may scan far),
    # and its time says nothing of the disk's.
    return await reads.run(view, INLINE_ROWS + 1, read, timed=False)
