"""Read-only access to the log for ``chatlog sql``, ``replay`` and ``export``.

A :class:`ReadOnly` is one read-only transaction, always rolled back; each backend makes sure
no statement can write through it (SQLite: ``mode=ro``, ``query_only`` and an authorizer;
PostgreSQL: ``SET TRANSACTION READ ONLY``). Reads are plain MVCC/WAL readers: they never block
the server's writer, nor it them. Rows are fetched in batches straight from the driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:  # SQLite's reads in the CLI run without SQLAlchemy (chatlog.log.sqlite.lite)
    from sqlalchemy.ext.asyncio import AsyncConnection

BATCH: Final = 5000

Rows = AsyncIterator[list[tuple[Any, ...]]]


class Readable(Protocol):
    """What ``replay`` and ``sql`` read through: a backend, or a SQLite file's own reader."""

    def read_only(self, *, limit_s: float | None = None) -> AbstractAsyncContextManager[ReadOnly]:
        """``async with log.read_only() as reader``: one read-only transaction."""
        ...

    async def revision(self) -> str | None:
        """The schema revision the log is at (``None``: no chatlog tables)."""
        ...

    def driver_error(self, exc: BaseException) -> BaseException | None:
        """The database driver's error under ``exc``, if it is one."""
        ...

    async def dispose(self) -> None:
        """Close what is open."""
        ...


class ReadOnly:
    """One read-only connection in one read-only transaction (SQLAlchemy streaming)."""

    def __init__(self, conn: AsyncConnection | None) -> None:
        #: ``None`` for a read on the driver's own connection (a subclass does the reading).
        self.conn = conn

    def connection(self) -> AsyncConnection:
        """The SQLAlchemy connection this read runs on (a backend's reads have one)."""
        assert self.conn is not None, "a read without SQLAlchemy overrides this method"
        return self.conn

    async def run(
        self, sql: str, params: Mapping[str, Any] | None = None, size: int = BATCH
    ) -> tuple[list[str], Rows]:
        """Run ``sql`` (named ``:params``); return its column names and its rows in batches."""
        from sqlalchemy import text

        result = await self.connection().stream(text(sql), dict(params or {}))
        return list(result.keys()), _stream_batches(result, size)

    async def batches(
        self, sql: str, params: Mapping[str, Any] | None = None, size: int = BATCH
    ) -> Rows:
        """The rows of ``sql`` in lists of up to ``size`` tuples."""
        _columns, rows = await self.run(sql, params, size)
        async for batch in rows:
            yield batch

    async def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row of ``sql``."""
        from sqlalchemy import text

        return (await self.connection().execute(text(sql), dict(params or {}))).scalar()

    async def interrupt_after(self, seconds: float) -> asyncio.TimerHandle | None:
        """Arrange for the running statement to be stopped after ``seconds``, where the
        database needs a timer for it (else it was set when the transaction began)."""
        return None

    def bind_time(self, when: date) -> Any:
        """``when`` (a datetime, or a date) as a parameter compared with ``sent_at`` (or its
        date) in hand-written SQL."""
        return when

    def json_row(self, columns: Sequence[str]) -> str | None:
        """A select expression giving each row as its finished JSON object (bytes), if the
        database can build it faster than Python; else ``None``."""
        return None


async def _stream_batches(result: Any, size: int) -> Rows:
    async for part in result.partitions(size):
        yield [tuple(row) for row in part]


def explain(exc: BaseException, *, timeout: float | None = None) -> str:
    """One line saying why a statement of ``chatlog sql`` failed (the database opened)."""
    orig = getattr(exc, "orig", None) or exc  # the driver's error, when SQLAlchemy wraps one
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    lowered = message.lower()
    if any(s in lowered for s in ("interrupted", "statement timeout", "canceling statement")):
        limit = f" of {timeout:g}s" if timeout is not None else ""
        return f"the query was stopped: it ran longer than the --timeout{limit}"
    if lowered.startswith("not allowed:"):
        return f"the query was refused: {message.partition(': ')[2]}"
    if "out of memory" in lowered or "string or blob too big" in lowered:
        return (
            f"the query was stopped: it needed more memory than chatlog sql allows ({message}); "
            "select fewer or smaller values"
        )
    if (
        "readonly database" in lowered
        or "read-only transaction" in lowered
        or "not authorized" in lowered
        or "query_only" in lowered
    ):
        return f"the log is opened read-only; this statement would change it ({message})"
    return f"the query failed: {message}"


def column_names(description: Sequence[Sequence[Any]] | None) -> list[str]:
    """Column names from a DB-API cursor description."""
    return [str(d[0]) for d in description or ()]
