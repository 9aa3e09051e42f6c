"""Read-only SQL on a SQLite log: ``mode=ro``, ``query_only``, an authorizer and caps.

The file is opened with ``mode=ro`` and ``PRAGMA query_only`` (:func:`.engine.make_engine`),
and an authorizer refuses ``ATTACH`` (which would otherwise create a file), pragmas that
change settings and the functions of :data:`DENIED_FUNCTIONS`; table-valued ``pragma_*``
functions of the read-only pragmas are allowed. A read caps SQLite's heap at
:data:`HEAP_LIMIT` (``PRAGMA hard_heap_limit``: process-wide, and the pragma can only lower it,
so it holds for the rest of the command's process) and no string or blob may pass
:data:`LENGTH_LIMIT` (``SQLITE_LIMIT_LENGTH``). Rows are fetched from
aiosqlite's cursor in batches: the next batch is fetched in its thread (where SQLite runs
without the GIL) while this one is written out. ``replay`` and ``export``, which only stream,
read on the calling thread instead (:mod:`chatlog.log.sqlite.inline`: measured faster).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

from chatlog.log.basics import STORED_TIME_FORMAT
from chatlog.log.readonly import BATCH, ReadOnly, Rows, column_names

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

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
#: Functions that leak (``fts3_tokenizer`` hands out a heap pointer) or reach outside the
#: database (extensions, files; the last four exist only where the shell's extensions are
#: loaded). Refused with a one-line error naming the function.
DENIED_FUNCTIONS: Final = frozenset(
    {"fts3_tokenizer", "load_extension", "readfile", "writefile", "edit", "fsdir", "zipfile"}
)
#: What SQLite may allocate in all during a read (NOMEM beyond it), and the longest string or
#: blob a statement may make (``randomblob(500000000)`` would otherwise take 2 GB).
HEAP_LIMIT: Final = 256 * 2**20
LENGTH_LIMIT: Final = 64 * 2**20
#: The schema tables a table-valued ``pragma_*`` function asks to "update" as it reads them
#: (SQLite's authorizer says SQLITE_UPDATE; ``mode=ro`` and ``query_only`` refuse real writes).
_SCHEMA_TABLES: Final = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master"})
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


class _Authorizer:
    """Allow reads only: no ATTACH (it creates files), no writes, no setting pragmas, none of
    :data:`DENIED_FUNCTIONS`; ``refused`` names the last function refused."""

    def __init__(self) -> None:
        self.refused: str | None = None

    def __call__(self, action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS:
            self.refused = arg2
            return sqlite3.SQLITE_DENY
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (
            arg2 is None or (arg1 or "").lower() in _READ_PRAGMAS
        ):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and (arg1 or "").lower() in _SCHEMA_TABLES:
            # How SQLite authorizes parsing a virtual table's schema when a statement first
            # reads it (the search index, FTS5). User SQL can never change the schema: SQLite
            # refuses that itself without `writable_schema`, a pragma refused above; the file is ro.
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY


class SqliteReadOnly(ReadOnly):
    """A read-only transaction on aiosqlite's own cursor."""

    def __init__(
        self, conn: AsyncConnection | None, driver: Any, authorizer: _Authorizer | None = None
    ) -> None:
        super().__init__(conn)
        self._driver = driver
        self._authorizer = authorizer

    async def run(
        self, sql: str, params: Mapping[str, Any] | None = None, size: int = BATCH
    ) -> tuple[list[str], Rows]:
        auth = self._authorizer
        if auth is not None:
            auth.refused = None
        try:
            cursor = await self._driver.execute(sql, dict(params or {}))
        except sqlite3.DatabaseError as exc:
            if auth is not None and auth.refused is not None:
                raise sqlite3.DatabaseError(
                    f"not allowed: the function {auth.refused}() is refused by chatlog sql"
                ) from exc
            raise
        return column_names(cursor.description), _batches(cursor, size)

    async def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        async with self._driver.execute(sql, dict(params or {})) as cursor:
            row = await cursor.fetchone()
        return None if row is None else row[0]

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
        # A reader that stopped early (`| head`) may be finalized after its connection closed.
        with suppress(sqlite3.ProgrammingError, ValueError):
            await cursor.close()


@asynccontextmanager
async def read_only(conn: AsyncConnection) -> AsyncIterator[SqliteReadOnly]:
    """A :class:`SqliteReadOnly` on ``conn`` in a transaction that is always rolled back."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await _caps(driver)
    authorizer = _Authorizer()
    await driver.set_authorizer(authorizer)
    trans = await conn.begin()
    try:
        yield SqliteReadOnly(conn, driver, authorizer)
    finally:
        await trans.rollback()
        # A query cancelled mid-flight (Ctrl-C on `replay --follow`) makes SQLAlchemy close
        # the connection; only one going back to the pool needs its authorizer removed.
        if not conn.invalidated:
            await driver.set_authorizer(None)


async def _caps(driver: Any) -> None:
    """Cap SQLite's heap (never raising a lower cap) and the length of a string or blob."""
    await (await driver.execute(f"PRAGMA hard_heap_limit={HEAP_LIMIT}")).close()
    # aiosqlite runs every call on its own thread; setlimit has no wrapper there.
    await driver._execute(driver._conn.setlimit, sqlite3.SQLITE_LIMIT_LENGTH, LENGTH_LIMIT)
