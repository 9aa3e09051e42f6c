"""Read-only SQL on a SQLite log: ``mode=ro``, ``query_only`` and an authorizer.

The file is opened with ``mode=ro`` and ``PRAGMA query_only`` (:func:`.engine.make_engine`),
and an authorizer refuses ``ATTACH`` (which would otherwise create a file) and pragmas that
change settings. Rows are fetched from aiosqlite's cursor in batches: the next batch is
fetched in its thread (where SQLite runs without the GIL) while this one is written out.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log.readonly import BATCH, ReadOnly, Rows, column_names
from chatlog.log.schema import STORED_TIME_FORMAT

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


class SqliteReadOnly(ReadOnly):
    """A read-only transaction on aiosqlite's own cursor."""

    def __init__(self, conn: AsyncConnection, driver: Any) -> None:
        super().__init__(conn)
        self._driver = driver

    async def run(
        self, sql: str, params: Mapping[str, Any] | None = None, size: int = BATCH
    ) -> tuple[list[str], Rows]:
        cursor = await self._driver.execute(sql, dict(params or {}))
        return column_names(cursor.description), _batches(cursor, size)

    async def interrupt_after(self, seconds: float) -> asyncio.TimerHandle | None:
        driver = self._driver
        loop = asyncio.get_running_loop()
        return loop.call_later(seconds, lambda: asyncio.ensure_future(driver.interrupt()))

    def bind_time(self, when: date) -> Any:
        # Stored as text; the same format compares in time order (a date as date() gives it).
        if not isinstance(when, datetime):
            return when.isoformat()
        return when.strftime(STORED_TIME_FORMAT)

    def json_row(self, columns: Sequence[str]) -> str | None:
        return json_object_sql(columns)


def json_object_sql(columns: Sequence[str]) -> str:
    """Each row as its JSON object, built by SQLite and fetched as a BLOB (no decode and
    re-encode in Python): measured faster than fetching the columns (benchmarks/replay_bench.py)."""
    return "CAST(json_object(" + ", ".join(f"'{c}', {c}" for c in columns) + ") AS BLOB)"


async def _batches(cursor: Any, size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
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


@asynccontextmanager
async def read_only(conn: AsyncConnection) -> AsyncIterator[SqliteReadOnly]:
    """A :class:`SqliteReadOnly` on ``conn`` in a transaction that is always rolled back."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.set_authorizer(_authorize)
    trans = await conn.begin()
    try:
        yield SqliteReadOnly(conn, driver)
    finally:
        await trans.rollback()
        # A query cancelled mid-flight (Ctrl-C on `replay --follow`) makes SQLAlchemy close
        # the connection; only one going back to the pool needs its authorizer removed.
        if not conn.invalidated:
            await driver.set_authorizer(None)
