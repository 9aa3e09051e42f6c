"""SQLite connections: the discipline lives here, in one place.

Every connection gets WAL, a ``busy_timeout``, foreign keys and the configured ``synchronous``
level. SQLAlchemy's own transaction handling is replaced by explicit ``BEGIN`` statements so a
write transaction can take the write lock up front with ``BEGIN IMMEDIATE`` (execution option
``immediate=True``) while readers use plain deferred transactions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:  # the pragmas serve chatlog.log.sqlite.lite too, which has no SQLAlchemy
    from sqlalchemy import Connection
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

BUSY_TIMEOUT_MS = 5000


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or ``None`` for a database in memory."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if database in (None, "", ":memory:"):
        return None
    return Path(database)


def apply_pragmas(execute: Callable[[str], Any], synchronous: str, *, readonly: bool) -> None:
    """The settings every connection to the log runs with (``execute`` runs one statement)."""
    if readonly:
        execute("PRAGMA query_only=ON")
    else:
        execute("PRAGMA journal_mode=WAL")
        execute(f"PRAGMA synchronous={synchronous.upper()}")
        # Freed bytes are zeroed, so an erased text (chatlog.log.edits) is in no free page
        # or freeblock of the file, nor in the WAL's newer page images.
        execute("PRAGMA secure_delete=ON")
    execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    execute("PRAGMA foreign_keys=ON")


def file_uri(path: Path, *, readonly: bool = True) -> str:
    """The SQLite ``file:`` URI of ``path`` (open with ``uri=True``): the path percent-encoded,
    so ``#``, ``?`` and ``%`` in a file name are part of the name; ``mode=ro`` when
    ``readonly`` (read-only, and never created)."""
    return "file:" + quote(str(path), safe="/") + ("?mode=ro" if readonly else "")


def readonly_url(path: Path) -> URL:
    """The URL that opens ``path`` read-only and never creates it: a SQLite ``file:`` URI
    (``mode=ro``) in which the path is percent-encoded, so ``#``, ``?`` and ``%`` in a file
    name are part of the name, not a fragment, a query or an escape."""
    from sqlalchemy.engine import URL

    return URL.create(
        "sqlite+aiosqlite",
        database=file_uri(path, readonly=False),
        query={"mode": "ro", "uri": "true"},
    )


def make_engine(url: str, *, synchronous: str = "FULL", readonly: bool = False) -> AsyncEngine:
    """An async engine for the log, with the pragmas applied on every connection."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    connect_args: dict[str, Any] = {"timeout": BUSY_TIMEOUT_MS / 1000}
    path = sqlite_path(url)
    target: str | URL = url
    if readonly and path is not None:
        target = readonly_url(path)
    # No rollback on check-in: every transaction here is SQLAlchemy's own (the BEGIN below)
    # and ends with it, and an awaited rollback at check-in by a task cancelled at shutdown
    # logged a CancelledError traceback (test_readme_examples, 2 of 3 clean-clone runs).
    engine = create_async_engine(target, connect_args=connect_args, pool_reset_on_return=None)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        apply_pragmas(cursor.execute, synchronous, readonly=readonly)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
