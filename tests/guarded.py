"""Helpers for tests that start servers with their own settings (limits, auth, heartbeats)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp.test_utils import TestServer

from tests.support import ChatClient

SECRET = "test-secret-0123456789abcdef"


def ws_url(server: TestServer, path: str = "/ws", **query: Any) -> str:
    url = str(server.make_url(path))
    return f"{url}?{urlencode(query)}" if query else url


async def open_client(
    session: aiohttp.ClientSession,
    server: TestServer,
    *,
    headers: dict[str, str] | None = None,
    **query: Any,
) -> ChatClient:
    """A ChatClient past Status and userlist, or ``WSServerHandshakeError`` when refused."""
    return await ChatClient.connect(session, ws_url(server, **query), headers=headers or {})


async def refused_status(
    session: aiohttp.ClientSession,
    server: TestServer,
    *,
    headers: dict[str, str] | None = None,
    **query: Any,
) -> int:
    """The HTTP status of a handshake the server refuses (0 if it was accepted)."""
    try:
        ws = await session.ws_connect(ws_url(server, **query), headers=headers or {})
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 0


def scalar(db: Path, sql: str, *args: object) -> Any:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchone()[0]


def rows(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


async def eventually(check: Callable[[], bool], timeout: float = 5.0, step: float = 0.02) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        await asyncio.sleep(step)
