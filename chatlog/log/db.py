"""Engines and migrations: the SQLite discipline lives here, in one place.

Every SQLite connection gets WAL, a ``busy_timeout``, foreign keys and the configured
``synchronous`` level. SQLAlchemy's own transaction handling is replaced by explicit ``BEGIN``
statements so the single writer can take the write lock up front with ``BEGIN IMMEDIATE``
(execution option ``immediate=True``) while readers use plain deferred transactions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from chatlog.settings import SettingsError, sqlite_path

BUSY_TIMEOUT_MS = 5000
#: PostgreSQL advisory lock key held while migrating, so servers starting together take turns.
MIGRATE_LOCK = 0x63686D67  # "chmg"


def make_engine(url: str, *, synchronous: str = "FULL", readonly: bool = False) -> AsyncEngine:
    """An async engine for the log, with the SQLite pragmas applied on every connection."""
    if not url.startswith("sqlite"):
        return create_async_engine(url, pool_pre_ping=True)
    # check_same_thread off: the writer commits small batches from the event loop's thread on
    # the connection aiosqlite opened in its own (chatlog.log.sqlite.commit); never two at once.
    connect_args: dict[str, Any] = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    if readonly:
        path = sqlite_path(url)
        url = f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    engine = create_async_engine(url, connect_args=connect_args)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        if readonly:
            cursor.execute("PRAGMA query_only=ON")
        else:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def check_database_path(url: str, *, must_exist: bool) -> None:
    """Fail early, with a message that says what to do, when a SQLite file cannot be used."""
    path = sqlite_path(url)
    if path is None:
        return
    if must_exist and not path.is_file():
        raise SettingsError(f"no database at {path}; start `chatlog serve --db {path}` first")
    parent = path.parent if str(path.parent) else Path(".")
    if not must_exist and not parent.is_dir():
        raise SettingsError(f"cannot create {path}: directory {parent} does not exist")
    if path.is_dir():
        raise SettingsError(f"{path} is a directory; give a database file path")


def migrations_dir() -> Path:
    """Where the alembic scripts are: inside an installed wheel, or at the source tree's top."""
    here = Path(__file__).resolve().parents[1]  # the chatlog package
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError("chatlog's migrations are missing from this installation")


def alembic_config(url: str | None = None) -> Config:
    """An alembic ``Config`` that needs no alembic.ini, so it works from an installed package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _run_command(sync_conn: Connection, name: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    getattr(command, name)(cfg, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (head by default), creating it if needed."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK})
        await conn.run_sync(_run_command, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` drops every table)."""
    async with engine.begin() as conn:
        await conn.run_sync(_run_command, "downgrade", revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or ``None`` for an empty database."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@asynccontextmanager
async def open_engine(
    url: str, *, synchronous: str = "FULL", migrate: bool = True
) -> AsyncIterator[AsyncEngine]:
    """Open the log (migrated to head unless told not to) and dispose of it afterwards."""
    check_database_path(url, must_exist=False)
    engine = make_engine(url, synchronous=synchronous)
    try:
        if migrate:
            await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()
