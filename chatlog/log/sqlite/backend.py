"""The log on one SQLite file (the embedded default).

A server's writer commits through a connection of its own (:mod:`.commit`), WAL checkpoints
run beside it (:mod:`.checkpoint`), and :mod:`.watch` delivers its commits and those of any
other process writing the same file (``chatlog broadcast``, another ``chatlog serve``) in ID
order. The tools (``sql``, ``replay``, ``purge``...) open the same file beside a running
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log import presence
from chatlog.log.backend import (
    Feed,
    Gauge,
    Listener,
    LogBackend,
    LogUnavailable,
    LogView,
    Node,
    WriteSession,
    first_line,
)
from chatlog.log.model import NewMessage, StoredMessage
from chatlog.log.readonly import ReadOnly
from chatlog.log.schema import COLUMNS, STORED_TIME_FORMAT
from chatlog.log.search import searchable
from chatlog.log.sqlite import checkpoint
from chatlog.log.sqlite.commit import SqliteCommitter, time_commits
from chatlog.log.sqlite.engine import make_engine, sqlite_path
from chatlog.log.sqlite.lite import check_path
from chatlog.log.sqlite.readonly import read_only
from chatlog.log.sqlite.reads import SqliteReads
from chatlog.log.sqlite.search import SqliteSearch
from chatlog.log.sqlite.watch import SqliteFeed

log = logging.getLogger(__name__)

_IMPORT = f"INSERT INTO messages ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


#: SQLite's error names, and what each means for the person who gave ``--db``.
_EXPLAINED: Final = {
    "SQLITE_NOTADB": "{name} is not a chatlog database ({detail}); "
    "give the path of a log made by `chatlog serve`",
    "SQLITE_CANTOPEN": "cannot open {name} ({detail}); check that it exists and that you may "
    "read it",
    "SQLITE_BUSY": "{name} is locked by another process ({detail}); try again when it is done",
    "SQLITE_LOCKED": "{name} is locked by another process ({detail}); try again when it is done",
    "SQLITE_READONLY": "cannot write {name} ({detail}); check the permissions of the file and "
    "its directory",
    "SQLITE_CORRUPT": "{name} is damaged ({detail}); restore it from a backup",
    "SQLITE_FULL": "cannot write {name} ({detail}); free some disk space",
    "SQLITE_IOERR": "cannot read or write {name} ({detail}); check the disk and the file",
}


class SqliteBackend(LogBackend):
    """The log in one SQLite file."""

    name = "sqlite"
    driver_errors = (sqlite3.Error,)
    search_index = SqliteSearch()

    @classmethod
    def describe(cls, url: str) -> tuple[str, str | None]:
        path = sqlite_path(url)
        return (str(path) if path is not None else "the database in memory"), None

    @classmethod
    def explain(cls, exc: BaseException, name: str, where: str | None) -> str | None:
        orig = cls.driver_error(exc)
        if orig is None:
            return None
        detail = first_line(orig)
        template = _EXPLAINED.get(getattr(orig, "sqlite_errorname", ""))
        if template is None and detail.startswith("no such table"):
            template = (
                "{name} has no chatlog tables ({detail}); run `chatlog db upgrade` on it first"
            )
        return (template or "{name} cannot be used ({detail})").format(name=name, detail=detail)

    def __init__(
        self, url: str, *, synchronous: str = "FULL", readonly: bool = False, create: bool = True
    ) -> None:
        self.path = sqlite_path(url)
        check_path(self.path, must_exist=readonly or not create)
        self._created = self.path is not None and not self.path.exists()
        super().__init__(url, make_engine(url, synchronous=synchronous, readonly=readonly))
        self.synchronous = synchronous
        #: Background WAL checkpoints of the server's writer (None: no writer, or in memory).
        self.checkpoints: checkpoint.Checkpointer | None = None
        #: The running writer's own connection (None while no writer runs).
        self.committer: SqliteCommitter | None = None
        #: Held by the writer around ops and their scrub, and by the feed around each read of
        #: new rows: an erasing commit is read (and delivered) only once it is scrubbed.
        self.delivery_hold = asyncio.Lock()
        #: The server's reads on plain sqlite3 connections (None: a database in memory,
        #: which only the engine's connections can see).
        self.reads = None if self.path is None else SqliteReads(self.path, readonly=readonly)

    async def dispose(self) -> None:
        if self.checkpoints is not None:
            await self.checkpoints.close()
        if self.reads is not None:
            self.reads.close()
        await super().dispose()

    def view(self) -> AbstractAsyncContextManager[LogView]:
        if self.reads is None:
            return super().view()
        return self.reads.view()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        # BEGIN IMMEDIATE: take the write lock up front, never fail half-way on upgrading it.
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(immediate=True)
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[WriteSession]:
        if self.path is None:
            raise LogUnavailable("the server needs a database file, not one in memory")
        committer = self.committer = SqliteCommitter(self.path, self.synchronous)
        try:
            wal_file = checkpoint.take_over(committer.db)
            if wal_file is not None and self.checkpoints is None:
                self.checkpoints = checkpoint.Checkpointer(wal_file)
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(immediate=True)
                if wal_file is not None:  # presence writes must not checkpoint in COMMIT either
                    async with conn.begin():
                        await conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
                yield _SqliteSession(conn, committer, self)
        finally:
            self.committer = None
            await committer.close()

    def feed(self, listener: Listener, node: Node) -> Feed:
        if self.path is None:
            return _LocalFeed(self, listener)
        return SqliteFeed(self.engine, self.path, listener, node, hold=self.delivery_hold)

    async def sweep(self, node: str | None = None) -> int:
        # One server owns the file: every connection row at start-up is a crash's leftover.
        return int(await self.write(lambda conn: presence.sweep_connections(conn, node)))

    @asynccontextmanager
    async def read_only(self, *, limit_s: float | None = None) -> AsyncIterator[ReadOnly]:
        async with self.engine.connect() as conn, read_only(conn) as reader:
            # SQLite reads a file lazily: without this, `SELECT 1` would "work" on any file.
            await reader.scalar("SELECT count(*) FROM sqlite_master")
            yield reader

    async def vacuum(self) -> None:
        path = self.path
        if path is None:
            return

        def run() -> None:
            with sqlite3.connect(path, timeout=30, isolation_level=None) as conn:
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        await asyncio.to_thread(run)

    async def scrub(self) -> bool:
        path = self.path
        if path is None:
            return True

        def run() -> bool:
            with contextlib.closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as db:
                return checkpoint.truncate(db)

        return await asyncio.to_thread(run)

    async def has_messages_table(self) -> bool:
        if self.path is not None and not self.path.exists():
            return False
        async with self.read_only() as reader:
            return bool(
                await reader.scalar(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'messages'"
                )
            )

    async def highest_id_ever(self, conn: AsyncConnection) -> int | None:
        seq = await conn.scalar(text("SELECT seq FROM sqlite_sequence WHERE name = 'messages'"))
        return None if seq is None else int(seq)

    async def insert_rows(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        # Plain executemany with tuples: several times faster than Core's per-row dict handling.
        for row in rows:
            for column in ("sent_at", "edited_at", "deleted_at"):
                if row[column] is not None:
                    row[column] = row[column].strftime(STORED_TIME_FORMAT)
        await conn.exec_driver_sql(_IMPORT, [tuple(row[c] for c in COLUMNS) for row in rows])
        await self.search_index.index_rows(conn, searchable(rows))

    def remove_if_new(self) -> None:
        if self._created and self.path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def time_commits(self, count: int, seconds: float) -> list[float]:
        return [] if self.path is None else time_commits(self.path, count, seconds)

    def gauges(self) -> list[Gauge]:
        if self.checkpoints is None:
            return []
        return [
            Gauge(
                "chatlog_wal_checkpoints",
                "WAL checkpoints run in the background (SQLite).",
                self.checkpoints.runs,
                counter=True,
            ),
            Gauge(
                "chatlog_wal_writer_checkpoints",
                "WAL checkpoints the writer ran itself, holding commits back, because the "
                "background ones never found the WAL idle (SQLite).",
                self.committer.checkpoints if self.committer is not None else 0,
                counter=True,
            ),
            Gauge(
                "chatlog_wal_pages",
                "WAL length in pages at the last background checkpoint (SQLite).",
                self.checkpoints.wal_pages,
            ),
        ]


class _SqliteSession(WriteSession):
    def __init__(
        self, conn: AsyncConnection, committer: SqliteCommitter, backend: SqliteBackend
    ) -> None:
        self.conn = conn
        self.committer = committer
        self._backend = backend

    async def append(self, batch: Sequence[NewMessage], sent_at: datetime) -> list[StoredMessage]:
        return await self.committer.commit(batch, sent_at)

    async def between_batches(self) -> None:
        checkpoints = self._backend.checkpoints
        if checkpoints is not None and checkpoints.committed():
            try:
                await self.committer.checkpoint()
            except sqlite3.Error as exc:  # disk full, read-only: the WAL keeps the data
                log.warning("WAL checkpoint failed: %s", exc)

    def holding_delivery(self) -> AbstractAsyncContextManager[object]:
        return self._backend.delivery_hold

    async def scrub(self) -> None:
        try:
            await self.committer.truncate()
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint after an erasure failed: %s", exc)


class _LocalFeed(Feed):
    """A log in memory (tests of the writer alone): only this process can write it, so each
    commit goes to the sockets directly, in the writer's order."""

    def __init__(self, backend: SqliteBackend, listener: Listener) -> None:
        self._backend = backend
        self._listener = listener

    async def prepare(self) -> None:
        swept = await self._backend.sweep()
        if swept:
            log.info("swept %d connection rows left by a previous run", swept)

    def committed(self, stored: list[StoredMessage]) -> None:
        self._listener.deliver(stored)
