"""The one place that picks a backend: from the database URL of ``--db``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote

from chatlog.log.basics import LogUnavailable

if TYPE_CHECKING:  # a SQLite file's reader needs no SQLAlchemy: see open_reader
    from chatlog.log.backend import LogBackend
    from chatlog.log.sqlite.lite import SqliteFile

#: ``create``: open, making the database if needed (serve, import, db upgrade); ``write``: an
#: existing log (purge, vacuum, db downgrade); ``read``: an existing log, read-only.
Access = Literal["create", "write", "read"]


def open_log(url: str, *, access: Access = "create", synchronous: str = "FULL") -> LogBackend:
    """The backend for ``url`` (an async SQLAlchemy URL, see ``chatlog.settings``); no I/O
    beyond checking that a file is where ``access`` needs it."""
    from sqlalchemy.engine import make_url

    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        from chatlog.log.sqlite.backend import SqliteBackend

        return SqliteBackend(
            url, synchronous=synchronous, readonly=access == "read", create=access == "create"
        )
    if backend == "postgresql":
        try:
            from chatlog.log.postgres.backend import PostgresBackend
        except ImportError as exc:  # asyncpg is an extra
            raise LogUnavailable(
                f"PostgreSQL needs asyncpg ({exc.name} is missing): pip install 'chatlog[postgres]'"
            ) from None
        return PostgresBackend(url)
    raise LogUnavailable(f"unsupported database {backend!r}; use SQLite or PostgreSQL")


#: The URL ``chatlog.settings.database_url`` makes of a file path (the path percent-encoded).
_SQLITE_FILE = "sqlite+aiosqlite:///"


def open_reader(url: str, *, inline: bool = False) -> LogBackend | SqliteFile:
    """The log at ``url`` opened read-only for ``chatlog sql`` and ``replay``: a SQLite file
    through :mod:`chatlog.log.sqlite.lite` (the driver alone; no SQLAlchemy to import, which
    was most of those commands' start-up), anything else as :func:`open_log` opens it.
    ``inline``: a SQLite file's reads without a time limit run on the calling thread
    (:mod:`chatlog.log.sqlite.inline`; for commands that only stream rows out)."""
    path = unquote(url.removeprefix(_SQLITE_FILE))
    if url.startswith(_SQLITE_FILE) and "?" not in url and path not in ("", ":memory:"):
        from chatlog.log.sqlite.lite import SqliteFile

        return SqliteFile(url, path, inline=inline)
    return open_log(url, access="read")


@asynccontextmanager
async def opened(
    url: str, *, access: Access = "create", synchronous: str = "FULL", migrate: bool = True
) -> AsyncIterator[LogBackend]:
    """Open the log (migrated to head unless told not to or read-only) and close it after."""
    log = open_log(url, access=access, synchronous=synchronous)
    try:
        if migrate and access != "read":
            await log.migrate()
        yield log
    finally:
        await log.dispose()


async def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the PostgreSQL server of ``server_url``; return its URL
    (the bench and the tests make throwaway logs this way)."""
    from chatlog.log.postgres import engine

    await engine.create_database(server_url, name)
    return engine.asyncpg_dsn(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` on the PostgreSQL server of ``server_url``, connections and all."""
    from chatlog.log.postgres import engine

    await engine.drop_database(server_url, name)


def _backend_class(url: str) -> type[LogBackend] | None:
    """The backend class for ``url``, or ``None`` when it is not one (or its driver is missing)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
        if backend == "sqlite":
            from chatlog.log.sqlite.backend import SqliteBackend

            return SqliteBackend
        if backend == "postgresql":
            from chatlog.log.postgres.backend import PostgresBackend

            return PostgresBackend
    except (ImportError, ValueError, ArgumentError):
        return None
    return None


def describe(url: str) -> tuple[str, str | None]:
    """How people know the database at ``url``: its name (a file's path, or which database
    on which server) and the server's ``host:port`` (``None`` for a file); never a password."""
    cls = _backend_class(url)
    return cls.describe(url) if cls is not None else ("the database", None)


def explain_failure(url: str, exc: BaseException) -> str | None:
    """One line saying what the database error ``exc`` means for the person who gave ``url``
    and what to do; ``None`` when ``exc`` is not a database error."""
    cls = _backend_class(url)
    if cls is None:
        return None
    name, where = cls.describe(url)
    return cls.explain(exc, name, where)
