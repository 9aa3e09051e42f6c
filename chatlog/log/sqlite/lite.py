"""A SQLite log read with the driver alone: ``chatlog sql`` and ``replay`` without SQLAlchemy.

Importing SQLAlchemy (and defining the tables) was most of those commands' start-up, for a
read the driver does by itself: :class:`SqliteFile` opens the file as the engine's read-only
connections do (``mode=ro``, ``query_only``, the same pragmas, caps and authorizer of
:mod:`chatlog.log.sqlite.readonly`) and offers what the read-only commands use of a
:class:`~chatlog.log.backend.LogBackend`: ``revision``, ``read_only``, ``driver_error``,
``dispose``. :func:`chatlog.log.open.open_reader` picks it for a SQLite file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import ClassVar

import aiosqlite

from chatlog.log.basics import LogUnavailable
from chatlog.log.sqlite.engine import BUSY_TIMEOUT_MS, apply_pragmas, file_uri
from chatlog.log.sqlite.readonly import SqliteReadOnly, _Authorizer, _caps


def check_path(path: Path | None, *, must_exist: bool) -> None:
    """Fail early, with a message that says what to do, when a file cannot be used."""
    if path is None:
        return
    if path.is_dir():
        raise LogUnavailable(f"{path} is a directory; give a database file path")
    if must_exist and not path.is_file():
        raise LogUnavailable(f"no database at {path}; start `chatlog serve --db {path}` first")
    parent = path.parent if str(path.parent) else Path(".")
    if not must_exist and not parent.is_dir():
        raise LogUnavailable(f"cannot create {path}: directory {parent} does not exist")


class SqliteFile:
    """The log's SQLite file, read-only, on aiosqlite connections of its own."""

    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (sqlite3.Error,)

    def __init__(self, url: str, path: str, *, inline: bool = False) -> None:
        self.url = url
        self.path = Path(path)
        #: Reads without a time limit run on the calling thread (:mod:`.inline`).
        self.inline = inline
        check_path(self.path, must_exist=True)

    @classmethod
    def driver_error(cls, exc: BaseException) -> BaseException | None:
        """The driver's error under ``exc``, if it is one (nothing wraps them here)."""
        orig = getattr(exc, "orig", None) or exc
        return orig if isinstance(orig, cls.driver_errors) else None

    def _uri(self) -> str:
        return file_uri(self.path)

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(
            self._uri(), uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        try:
            for statement in _pragmas():
                await (await conn.execute(statement)).close()
        except BaseException:
            await conn.close()
            raise
        return conn

    async def revision(self) -> str | None:
        """The revision the database is at, ``None`` when it has no chatlog tables."""
        conn = await self._connect()
        try:
            async with conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                ("alembic_version",),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None or not row[0]:
                return None
            async with conn.execute("SELECT version_num FROM alembic_version") as cursor:
                row = await cursor.fetchone()
            return None if row is None else str(row[0])
        finally:
            await conn.close()

    @asynccontextmanager
    async def read_only(self, *, limit_s: float | None = None) -> AsyncIterator[SqliteReadOnly]:
        """One read-only transaction, always rolled back (as ``SqliteBackend.read_only``)."""
        if self.inline and limit_s is None:
            from chatlog.log.sqlite.inline import inline_read

            with inline_read(self._uri(), BUSY_TIMEOUT_MS / 1000, _pragmas()) as inline:
                yield inline
            return
        conn = await self._connect()
        try:
            await _caps(conn)
            authorizer = _Authorizer()
            await conn.set_authorizer(authorizer)
            await (await conn.execute("BEGIN")).close()
            try:
                reader = SqliteReadOnly(None, conn, authorizer)
                # SQLite reads a file lazily: without this, `SELECT 1` would "work" on any file.
                await reader.scalar("SELECT count(*) FROM sqlite_master")
                yield reader
            finally:
                with suppress(sqlite3.Error):  # a statement interrupted may have ended it
                    await (await conn.execute("ROLLBACK")).close()
        finally:
            await conn.close()

    async def dispose(self) -> None:
        """Nothing stays open between reads."""


def _pragmas() -> list[str]:
    statements: list[str] = []
    apply_pragmas(statements.append, "FULL", readonly=True)
    return statements


__all__ = ["SqliteFile", "check_path"]
