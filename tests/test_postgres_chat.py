"""The core chat behaviours of tests/test_chat.py, run again on a PostgreSQL-backed server.

The ``settings`` fixture is overridden so the in-process test server uses a fresh PostgreSQL
database (``pg_url``); the imported tests then run unchanged against it.
"""

from __future__ import annotations

import pytest

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

__all__ = [
    "test_ids_are_in_order_for_every_client",
    "test_open_sends_status_then_userlist",
    "test_rename_replaces_and_close_removes_exactly_that_entry",
    "test_rooms_are_isolated",
]


@pytest.fixture
def settings(pg_url: str) -> Settings:
    return Settings(db=pg_url, heartbeat=0)


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
