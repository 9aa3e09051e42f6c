"""Core chat and resume tests (test_chat.py, test_resume.py) again, on a PostgreSQL server.

The ``settings`` fixture is overridden so the in-process test server uses a fresh PostgreSQL
database (``pg_url``); the imported tests then run unchanged against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from chatlog.server.app import create_app
from chatlog.settings import Settings
from tests.conftest import Connect
from tests.pgsupport import fetch
from tests.support import b64
from tests.test_chat import (
    test_ids_are_in_order_for_every_client,
    test_open_sends_status_then_userlist,
    test_rename_replaces_and_close_removes_exactly_that_entry,
    test_rooms_are_isolated,
)
from tests.test_resume import (
    test_empty_resume_still_sends_the_marker,
    test_epoch_mismatch_is_signalled,
    test_history_pages_backwards_in_ascending_order,
    test_status_head_allows_exact_resume_with_nothing_received,
)

__all__ = [
    "test_empty_resume_still_sends_the_marker",
    "test_epoch_mismatch_is_signalled",
    "test_history_pages_backwards_in_ascending_order",
    "test_ids_are_in_order_for_every_client",
    "test_open_sends_status_then_userlist",
    "test_rename_replaces_and_close_removes_exactly_that_entry",
    "test_rooms_are_isolated",
    "test_status_head_allows_exact_resume_with_nothing_received",
]


@pytest.fixture
def settings(pg_url: str) -> Settings:
    return Settings(db=pg_url, heartbeat=0, node_heartbeat=0.3, node_timeout=5.0)


@pytest.fixture
async def server(
    settings: Settings, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> TestServer:
    """As in conftest, but set up after the database so it stops before the database drops."""
    return await aiohttp_server(create_app(settings))


async def test_retried_nonce_is_stored_once_and_acked_to_its_sender(
    connect: Connect, pg_url: str
) -> None:
    """On PostgreSQL a retried Nonce is stored once; the room sees it once, the sender is
    answered with the original ID again."""
    sender, other = await connect(), await connect()
    await sender.say("once", Nonce="n-1")
    first = await sender.recv_chat("once")
    await sender.say("once", Nonce="n-1")
    again = await sender.recv_chat("once")
    assert again["ID"] == first["ID"]
    assert (await other.recv("Chat"))["ID"] == first["ID"]
    await sender.say("next")
    assert (await other.recv("Chat"))["Message"] == b64("next")
    rows = await fetch(pg_url, "select id from messages where nonce = 'n-1'")
    assert [row["id"] for row in rows] == [first["ID"]]


async def test_swept_live_server_registers_its_sockets_again(connect: Connect, pg_url: str) -> None:
    """A live server whose rows were swept (as if it had missed heartbeats) puts its sockets'
    rows back on its next heartbeat and re-sends the user list."""
    alice = await connect()
    await alice.alias("alice")
    for table in ("users", "websocket_connections", "nodes"):
        await fetch(pg_url, f"delete from {table}")
    await alice.until_users("alice")
    assert [r["alias"] for r in await fetch(pg_url, "select alias from users")] == ["alice"]
    assert len(await fetch(pg_url, "select node from nodes")) == 1
