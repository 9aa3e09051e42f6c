"""Read-only access to the log for ``chatlog sql``, ``replay`` and ``export``.

SQLite is opened with ``mode=ro`` and ``PRAGMA query_only`` (see :func:`chatlog.log.db.make_engine`)
plus an authorizer that refuses ``ATTACH`` (which would otherwise create a file) and pragmas that
change settings. PostgreSQL runs every read in a ``READ ONLY`` transaction that is rolled back.
Reads are plain WAL readers: they never block the server's writer, nor it them.

Rows are fetched in batches straight from the driver: on SQLite the next batch is already being
fetched in aiosqlite's thread (where SQLite runs without the GIL) while this one is written out.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatlog.log import db

BATCH: Final = 5000

#: Pragmas that only read, even when given an argument such as a table name.
_READ_PRAGMAS: Final = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_info",
        "index_xinfo",
        "index_list",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
    }
)
_ALLOWED_ACTIONS: Final = frozenset(
    {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        sqlite3.SQLITE_RECURSIVE,
        sqlite3.SQLITE_TRANSACTION,
        sqlite3.SQLITE_SAVEPOINT,
    }
)


def _authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    """Allow reads only: no ATTACH (it creates files), no writes, no setting pragmas."""
    if action in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg2 is None or (arg1 or "").lower() in _READ_PRAGMAS):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


async def _driver(conn: AsyncConnection) -> Any:
    """The driver's own connection (aiosqlite's) under a SQLAlchemy connection."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    return driver


@dataclass
class Reader:
    """One read-only connection in one read-only transaction."""

    conn: AsyncConnection
    dialect: str

    async def _driver(self) -> Any:
        return await _driver(self.conn)

    async def run(
        self, sql: str, params: Mapping[str, Any] | None = None, size: int = BATCH
    ) -> tuple[list[str], AsyncIterator[list[tuple[Any, ...]]]]:
        """Run ``sql`` (named ``:params``); return its column names and its rows in batches."""
        params = dict(params or {})
        if self.dialect == "sqlite":
            driver = await self._driver()
            cursor = await driver.execute(sql, params)
            return column_names(cursor.description), _sqlite_batches(cursor, size)
        result = await self.conn.stream(text(sql), params)
        return list(result.keys()), _stream_batches(result, size)

    async def batches(
        self, sql: str, params: Mapping[str, Any] | None = None, size: int = BATCH
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The rows of ``sql`` in lists of up to ``size`` tuples."""
        _columns, rows = await self.run(sql, params, size)
        async for batch in rows:
            yield batch

    async def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row of ``sql``."""
        return (await self.conn.execute(text(sql), dict(params or {}))).scalar()

    async def interrupt_after(self, seconds: float) -> asyncio.TimerHandle | None:
        """Arrange for the running statement to be stopped after ``seconds`` (SQLite).

        PostgreSQL gets ``statement_timeout`` instead, set when the transaction begins.
        """
        if self.dialect != "sqlite":
            return None
        driver = await self._driver()
        loop = asyncio.get_running_loop()
        return loop.call_later(seconds, lambda: asyncio.ensure_future(driver.interrupt()))


async def _sqlite_batches(cursor: Any, size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
    # The next batch is fetched in aiosqlite's thread while the caller writes this one.
    pending = asyncio.ensure_future(cursor.fetchmany(size))
    try:
        while rows := await pending:
            pending = asyncio.ensure_future(cursor.fetchmany(size))
            yield rows
    finally:
        with suppress(Exception):  # a batch fetched ahead that nobody wants any more
            await pending
        await cursor.close()


async def _stream_batches(result: Any, size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
    async for part in result.partitions(size):
        yield [tuple(row) for row in part]


def open_engine(url: str) -> AsyncEngine:
    """A read-only engine for an existing log; raises ``SettingsError`` when there is none."""
    db.check_database_path(url, must_exist=True)
    return db.make_engine(url, readonly=True)


@asynccontextmanager
async def reading(
    engine: AsyncEngine, *, limit_s: float | None = None, conn: AsyncConnection | None = None
) -> AsyncIterator[Reader]:
    """A :class:`Reader` in a fresh read-only transaction, always rolled back at the end."""
    if conn is None:
        async with engine.connect() as own, reading(engine, limit_s=limit_s, conn=own) as reader:
            yield reader
        return
    dialect = engine.dialect.name
    if dialect == "sqlite":
        await (await _driver(conn)).set_authorizer(_authorize)
    trans = await conn.begin()
    try:
        if dialect == "postgresql":
            await conn.execute(text("SET TRANSACTION READ ONLY"))
            if limit_s is not None:
                await conn.execute(text(f"SET LOCAL statement_timeout = {int(limit_s * 1000)}"))
        yield Reader(conn, dialect)
    finally:
        await trans.rollback()


def explain(exc: BaseException, *, timeout: float | None = None) -> str:
    """One line saying why a read failed, for the command line."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    lowered = message.lower()
    if any(s in lowered for s in ("interrupted", "statement timeout", "canceling statement")):
        limit = f" of {timeout:g}s" if timeout is not None else ""
        return f"the query was stopped: it ran longer than the --timeout{limit}"
    if (
        "readonly database" in lowered
        or "read-only transaction" in lowered
        or "not authorized" in lowered
        or "query_only" in lowered
    ):
        return f"the log is opened read-only; this statement would change it ({message})"
    if isinstance(exc, SQLAlchemyError | sqlite3.Error) or type(orig).__module__.startswith(
        "asyncpg"
    ):
        return f"the query failed: {message}"
    return f"{type(orig).__name__}: {message}"


def bind_value(value: str) -> int | str:
    """``--param`` values that look like integers are bound as integers, the rest as text."""
    stripped = value.strip()
    if stripped.lstrip("+-").isdigit() and len(stripped) < 19:
        return int(stripped)
    return value


def column_names(description: Sequence[Sequence[Any]] | None) -> list[str]:
    """Column names from a DB-API cursor description."""
    return [str(d[0]) for d in description or ()]
