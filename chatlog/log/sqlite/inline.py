"""A SQLite file read on the calling thread: ``replay`` and ``export`` stream through this.

aiosqlite runs each call on a thread of its own, so that a slow statement cannot stall the
event loop. A command that only streams rows out has nothing else for its loop to do, and the
thread was pure cost there: SQLite releases the GIL for every row it steps, so the fetching
thread and the writing one handed the GIL back and forth a million times in a million-row
replay (measured 20-30% slower than one thread doing both, ``benchmarks/replay_bench.py``).
:class:`InlineReadOnly` is the same read (``mode=ro``, the same pragmas, caps and authorizer
as :mod:`chatlog.log.sqlite.readonly`) on a plain :mod:`sqlite3` connection, called directly.

Ctrl-C still stops it at once: ``asyncio.run`` turns it into a cancellation of the running
task, which lands where the loop gets a turn (once per batch) and, inside a long statement
(a ``--room`` that matches little of a large log), through a progress handler that makes
SQLite stop the statement when the task has been asked to cancel. It has no timer, so only
reads without a time limit use it (``chatlog sql --timeout`` stays on aiosqlite).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Final

from chatlog.log.readonly import Rows, column_names
from chatlog.log.sqlite.readonly import (
    HEAP_LIMIT,
    LENGTH_LIMIT,
    SqliteReadOnly,
    _Authorizer,
)

#: SQLite calls the progress handler every this many virtual machine instructions (about a
#: millisecond): how soon a statement notices Ctrl-C.
PROGRESS_STEPS: Final = 100_000
#: Rows per batch: measured a little faster than 5000 (the batch stays in the CPU's caches) and
#: a fifth of the memory for a batch of large rows.
INLINE_BATCH: Final = 1000


class InlineReadOnly(SqliteReadOnly):
    """A read-only transaction on a :mod:`sqlite3` connection used from the calling thread."""

    def __init__(self, driver: sqlite3.Connection, authorizer: _Authorizer) -> None:
        super().__init__(None, driver, authorizer)

    def _execute(self, sql: str, params: Mapping[str, Any] | None) -> sqlite3.Cursor:
        auth = self._authorizer
        assert auth is not None
        auth.refused = None
        try:
            return self._driver.execute(sql, dict(params or {}))  # type: ignore[no-any-return]
        except sqlite3.DatabaseError as exc:
            _raise_if_cancelled(exc)
            if auth.refused is not None:
                raise sqlite3.DatabaseError(
                    f"not allowed: the function {auth.refused}() is refused by chatlog sql"
                ) from exc
            raise

    async def run(
        self, sql: str, params: Mapping[str, Any] | None = None, size: int = INLINE_BATCH
    ) -> tuple[list[str], Rows]:
        cursor = self._execute(sql, params)
        return column_names(cursor.description), _batches(cursor, size)

    async def batches(
        self, sql: str, params: Mapping[str, Any] | None = None, size: int = INLINE_BATCH
    ) -> Rows:
        async for batch in _batches(self._execute(sql, params), size):
            yield batch

    async def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        cursor = self._execute(sql, params)
        try:
            row = _fetch(cursor, 1)
        finally:
            cursor.close()
        return row[0][0] if row else None

    async def interrupt_after(self, seconds: float) -> asyncio.TimerHandle | None:
        # Only between batches: a statement running on this thread holds the loop.
        return asyncio.get_running_loop().call_later(seconds, self._driver.interrupt)


async def _batches(cursor: sqlite3.Cursor, size: int) -> Rows:
    try:
        while rows := _fetch(cursor, size):
            yield rows
            # A turn of the loop per batch: where Ctrl-C's cancellation gets in.
            await asyncio.sleep(0)
    finally:
        # A reader that stopped early (`| head`) may be finalized after its connection closed.
        with suppress(sqlite3.ProgrammingError):
            cursor.close()


def _fetch(cursor: sqlite3.Cursor, size: int) -> list[Any]:
    try:
        return cursor.fetchmany(size)
    except sqlite3.DatabaseError as exc:
        _raise_if_cancelled(exc)
        raise


def _raise_if_cancelled(exc: sqlite3.DatabaseError) -> None:
    """A statement stopped by the progress handler is the task's cancellation (Ctrl-C)."""
    task = asyncio.current_task()
    if isinstance(exc, sqlite3.OperationalError) and task is not None and task.cancelling():
        raise asyncio.CancelledError from None


def _stop_when_cancelled(task: asyncio.Task[Any]) -> Callable[[], bool]:
    def stop() -> bool:
        # Python code, so a pending Ctrl-C handler runs on entering it (a C method would not
        # let it); once that has asked the task to cancel, True makes SQLite stop the
        # statement, which then fails "interrupted".
        return task.cancelling() > 0

    return stop


@contextmanager
def inline_read(uri: str, timeout: float, pragmas: Sequence[str]) -> Iterator[InlineReadOnly]:
    """Open ``uri`` (a ``mode=ro`` file URI), apply ``pragmas``, the caps and the authorizer,
    and yield an :class:`InlineReadOnly` in a transaction that is always rolled back."""
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    try:
        for statement in pragmas:
            conn.execute(statement).close()
        # As chatlog.log.sqlite.readonly._caps: the heap cap is process-wide and only lowers.
        conn.execute(f"PRAGMA hard_heap_limit={HEAP_LIMIT}").close()
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, LENGTH_LIMIT)
        authorizer = _Authorizer()
        conn.set_authorizer(authorizer)
        task = asyncio.current_task()
        if task is not None:
            conn.set_progress_handler(_stop_when_cancelled(task), PROGRESS_STEPS)
        conn.execute("BEGIN").close()
        try:
            reader = InlineReadOnly(conn, authorizer)
            # SQLite reads a file lazily: without this, `SELECT 1` would "work" on any file.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            yield reader
        finally:
            with suppress(sqlite3.Error):  # a statement interrupted may have ended it
                conn.execute("ROLLBACK").close()
    finally:
        conn.close()
