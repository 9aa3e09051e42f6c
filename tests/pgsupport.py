"""A throw-away PostgreSQL database per test, on the server named by CHATLOG_TEST_POSTGRES_URL."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.engine import make_url

ENV = "CHATLOG_TEST_POSTGRES_URL"


def server_url() -> str | None:
    """The test server's URL (any database on it), or ``None`` when not configured."""
    return os.environ.get(ENV) or None


def _plain(url: str, database: str) -> str:
    return (
        make_url(url)
        .set(drivername="postgresql", database=database)
        .render_as_string(hide_password=False)
    )


@asynccontextmanager
async def fresh_database(url: str) -> AsyncIterator[str]:
    """Create ``chatlog_test_<random>``, yield its ``postgresql://`` URL, always drop it."""
    import asyncpg

    name = f"chatlog_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(_plain(url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _plain(url, name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def fetch(url: str, sql: str, *args: Any) -> list[Any]:
    """Run one query on a short-lived connection and return its rows."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()
