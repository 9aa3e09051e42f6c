"""PostgreSQL connections: the SQLAlchemy engine, and the plain asyncpg DSN for the listener
connection and maintenance statements that must run outside a transaction."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(url: str) -> AsyncEngine:
    """An async engine for the log (asyncpg), checking pooled connections before use."""
    return create_async_engine(url, pool_pre_ping=True)


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    """``url`` as the plain ``postgresql://`` DSN asyncpg takes (optionally another database)."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def connect(url: str, **kwargs: Any) -> Any:
    """A plain asyncpg connection to the database of ``url``."""
    return await asyncpg.connect(asyncpg_dsn(url), **kwargs)


async def create_database(url: str, name: str) -> None:
    """``CREATE DATABASE name`` on the server of ``url`` (bench and tests make throwaway logs)."""
    await _admin(url, f'CREATE DATABASE "{name}"')


async def drop_database(url: str, name: str) -> None:
    """``DROP DATABASE IF EXISTS name ... WITH (FORCE)`` on the server of ``url``."""
    await _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
