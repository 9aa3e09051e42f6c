"""`chatlog broadcast` (the original's BroadCast) and the reserved alias ``system``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.backends import Backend, scalar
from tests.helpers import eventually, run_cli
from tests.wsclients import Connect, b64


async def broadcast(backend: Backend, *args: str) -> list[tuple[int, str]]:
    """Run `chatlog broadcast` beside the server; the (ID, room) lines it printed."""
    result = await asyncio.to_thread(run_cli, "broadcast", "--db", backend.db, *args)
    assert result.exit_code == 0, result.output
    return [
        (int(i), room)
        for i, room in (line.split("\t") for line in result.stdout.split("\n") if line)
    ]


async def test_broadcast_reaches_the_named_rooms_only_in_order_with_chat(
    backend: Backend, connect: Connect
) -> None:
    """A broadcast reaches live clients of its rooms as a Chat frame from "system", in ID
    order with concurrent chat, and nobody in another room sees it."""
    talker = await connect(room="a")
    listener = await connect(room="a")
    elsewhere = await connect(room="b")

    async def chatter() -> None:
        for i in range(40):
            await talker.say(f"c{i}")
            await asyncio.sleep(0.005)

    task = asyncio.create_task(chatter())
    printed = await broadcast(backend, "--room", "a", "maintenance at six")
    await task
    [(msg_id, room)] = printed
    assert room == "a"
    frames = await listener.chats(41)
    ids = [f["ID"] for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == 41
    system = next(f for f in frames if f["ID"] == msg_id)
    assert system["Author"] == "system" and system["Room"] == "a"
    assert system["Message"] == b64("maintenance at six") and len(system["Sent"]) == 19
    await elsewhere.say("only b")
    assert (await elsewhere.recv("Chat"))["Message"] == b64("only b")


async def test_broadcast_all_and_without_a_server_is_found_by_resume(
    backend: Backend, connect: Connect
) -> None:
    """--all posts to every room with a connection or a message; the rows are in the log
    and a resume delivers them."""
    first = await connect(room="one")
    await first.say("hello")
    await first.recv("Chat")
    second = await connect(room="two")
    await eventually(lambda: scalar(backend.db, "select count(*) from websocket_connections") == 2)
    printed = await broadcast(backend, "--all", "to everyone")
    assert sorted(room for _i, room in printed) == ["one", "two"]
    await first.recv_chat("to everyone")
    await second.recv_chat("to everyone")
    again = await connect(room="two", since=0)
    resumed = await again.recv("Chat")
    assert (
        resumed["Author"] == "system"
        and resumed["ID"] == dict((room, i) for i, room in printed)["two"]
    )


def test_broadcast_works_with_no_server_running(backend: Backend) -> None:
    """With no server, broadcast still stores the message and prints its ID."""
    assert run_cli("db", "upgrade", "--db", backend.db).exit_code == 0
    result = run_cli("broadcast", "--db", backend.db, "--room", "r", "--room", "s", "hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == "1\tr\n2\ts\n"


@pytest.mark.parametrize(
    "args",
    [("hi",), ("--all", "--room", "r", "hi"), ("--room", "r", ""), ("--room", "r", "bell\x07")],
)
def test_broadcast_refuses_bad_arguments_with_one_line(backend: Backend, args: Any) -> None:
    """No room, both --room and --all, an empty or control-character text: one line, exit 2."""
    result = run_cli("broadcast", "--db", backend.db, *args)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


@pytest.mark.parametrize("name", ["system", " System ", "SYSTEM"])
async def test_no_client_can_take_the_system_alias(connect: Connect, name: str) -> None:
    """A User frame asking for "system" (trimmed, any case) gets an Error and changes nothing."""
    client = await connect()
    other = await connect()
    await other.alias("bob")
    await client.ws.send_json({"User": name})
    error = await client.recv("Error")
    assert error["Code"] == "reserved-alias"
    await client.alias("carol")
    # The refused name never showed up: the next list is the one carol's alias made.
    assert (await other.recv("userlist"))["Users"] == [{"User": "carol"}, {"User": "bob"}]


async def test_foreign_rows_between_own_commits_are_delivered_in_id_order(
    connect: Connect, db_path: Path
) -> None:
    """Rows another connection commits between the server's own are all delivered, once,
    in ID order (the exact race is in test_follow.py)."""
    client = await connect()
    await client.say("own-1")
    await client.recv("Chat")
    foreign = sqlite3.connect(db_path, isolation_level=None)
    for round_ in range(20):
        foreign.execute(
            "INSERT INTO messages (room, ws_id, author, message, text, raw, sent_at) "
            "VALUES ('main', '', 'system', ?, 'f', ?, '2026-01-01 00:00:00.000000')",
            (b64("f"), json.dumps({"Message": b64("f"), "Author": "system"})),
        )
        await client.say(f"own-{round_}")
    frames = await client.chats(40)
    ids = [f["ID"] for f in frames]
    assert ids == list(range(ids[0], ids[0] + 40))
    assert sum(f["Author"] == "system" for f in frames) == 20
