"""Fixtures: a real aiohttp server on a loopback port over a real SQLite file in a temp dir."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from chatlog.server.app import create_app
from chatlog.settings import Settings
from tests.support import ChatClient

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip for a missing dependency outside CI; under CI=true a missing dependency fails."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests may not be skipped)")
    pytest.skip(reason)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test (``postgresql://`` URL), dropped afterwards."""
    from tests.pgsupport import ENV, fresh_database, server_url

    url = server_url()
    if url is None:
        skip_or_fail(f"{ENV} is not set: no PostgreSQL to test against")
        raise AssertionError("unreachable")
    async with fresh_database(url) as db_url:
        yield db_url


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "chat.db"


@pytest.fixture
def settings(db_path: Path) -> Settings:
    # No rate limit: tests send bursts no person types; tests of the limit set their own.
    return Settings(db=str(db_path), heartbeat=0, rate=0)


@pytest.fixture
async def server(
    aiohttp_server: Callable[..., Awaitable[TestServer]], settings: Settings
) -> TestServer:
    return await aiohttp_server(create_app(settings))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


Connect = Callable[..., Awaitable[ChatClient]]


@pytest.fixture
def connect(server: TestServer, session: aiohttp.ClientSession) -> Connect:
    """Open a chat client on the test server: ``await connect(room="r", since=5)``."""

    async def _connect(path: str = "/ws", **query: Any) -> ChatClient:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        url = str(server.make_url(path)) + (f"?{params}" if params else "")
        return await ChatClient.connect(session, url)

    return _connect
