"""The chat server over real sockets and a real log (SQLite and PostgreSQL): the IRIS sample's
behaviour, fixed."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from chatlog.protocol import STATUS_MESSAGE
from tests.backends import Backend, rows
from tests.helpers import eventually
from tests.wsclients import Connect, b64

#: ``sent_at`` to the second, as the Sent field of a Chat frame shows it.
SENT_SECOND = {
    "sqlite": "strftime('%Y-%m-%d %H:%M:%S', sent_at)",
    "postgres": "to_char(sent_at, 'YYYY-MM-DD HH24:MI:SS')",
}


async def test_open_sends_status_then_userlist(connect: Connect) -> None:
    """A new client gets the Status frame (24-char WSID, Head, Epoch) and then the user list."""
    alice = await connect()
    assert alice.status is not None
    assert alice.status["Message"] == STATUS_MESSAGE
    assert re.fullmatch(r"[A-Za-z0-9+/]{22}==", alice.ws_id)
    assert alice.status["Head"] == 0 and len(alice.status["Epoch"]) == 32
    assert alice.seen[1] == {"Type": "userlist", "Users": []}


async def test_original_client_frames(connect: Connect, backend: Backend) -> None:
    """The original page's frames work: alias, a Latin-1 btoa body, and `{}` from a bare alias."""
    page = await connect("/csp/user/Chat.Server.cls")
    assert (await page.alias("bob"))["Users"] == [{"User": "bob"}]
    latin1 = b64("café crème", "latin-1")  # what btoa() sends for text up to U+00FF
    await page.ws.send_str(json.dumps({"Message": latin1, "Author": "bob"}))
    chat = await page.recv("Chat")
    assert chat["Message"] == latin1 and chat["Author"] == "bob"
    await page.ws.send_str("{}")
    error = await page.recv("Error")
    assert error["Code"] == "unknown-frame"
    assert rows(backend.db, "select author, text from messages") == [("bob", "café crème")]
    assert rows(backend.db, "select kind from errors") == [("unknown-frame",)]


async def test_everyone_in_room_gets_the_message_sender_included(
    connect: Connect, backend: Backend
) -> None:
    """Three clients in a room all receive a message, sender included, with Type, Sent, ID, Room."""
    clients = [await connect(room="lobby") for _ in range(3)]
    await clients[0].say("hello all", Extra=[1, "two"])
    frames = [await c.recv("Chat") for c in clients]
    assert frames[0] == frames[1] == frames[2]
    frame = frames[0]
    assert list(frame) == ["Message", "Author", "Extra", "Type", "Sent", "ID", "Room"]
    assert frame["Message"] == b64("hello all") and frame["Extra"] == [1, "two"]
    assert frame["Type"] == "Chat" and frame["Room"] == "lobby" and frame["Author"] == "unknown"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", frame["Sent"])
    (row,) = rows(backend.db, f"select id, {SENT_SECOND[backend.kind]} from messages")
    assert frame["ID"] == row[0] and frame["Sent"] == row[1]


async def test_rooms_are_isolated(connect: Connect) -> None:
    """A message in one room never reaches a socket in another."""
    red, blue = await connect(room="red"), await connect(room="blue")
    await red.say("in red")
    await blue.say("in blue")
    assert (await blue.recv("Chat"))["Room"] == "blue"
    assert (await red.recv("Chat"))["Room"] == "red"
    await red.say("again")
    await red.recv("Chat")
    await blue.say("sync")
    frame = await blue.recv("Chat")
    assert frame["Room"] == "blue" and frame["Message"] == b64("sync")


async def test_text_user_inside_a_chat_is_a_chat(connect: Connect, backend: Backend) -> None:
    """A chat frame containing `User` (body, author, extra key) is a chat, not a rename."""
    alice = await connect()
    await alice.alias("SuperUser")
    await alice.ws.send_str(json.dumps({"Message": b64("User list please"), "Author": "User"}))
    frame = await alice.recv("Chat")
    assert frame["Author"] == "SuperUser"
    assert rows(backend.db, "select text from messages") == [("User list please",)]
    assert rows(backend.db, "select alias from users") == [("SuperUser",)]


async def test_forged_author_is_replaced(connect: Connect, backend: Backend) -> None:
    """The author shown and stored is the connection's alias, whatever the frame claims."""
    mallory, victim = await connect(), await connect()
    await mallory.alias("mallory")
    await mallory.ws.send_str(json.dumps({"Message": b64("trust me"), "Author": "admin"}))
    assert (await victim.recv("Chat"))["Author"] == "mallory"
    assert rows(backend.db, "select author from messages") == [("mallory",)]


async def test_rename_replaces_and_close_removes_exactly_that_entry(connect: Connect) -> None:
    """Renames replace the entry in place; a close removes that connection's entry only."""
    first, second, third = await connect(), await connect(), await connect()
    await first.alias("bob")
    await second.alias("bob")
    await third.alias("carol")
    await third.until_users("bob", "bob", "carol")
    await first.alias("robert")
    await third.until_users("robert", "bob", "carol")
    await second.close()
    await third.until_users("robert", "carol")
    late = await connect()
    assert late.users == [{"User": "robert"}, {"User": "carol"}]


BAD_FRAMES = [
    ("not json at all", "invalid-json"),
    ("[1, 2]", "not-an-object"),
    ('"just a string"', "not-an-object"),
    ('{"Author": "bob"}', "unknown-frame"),
    ('{"Message": 42}', "bad-type"),
    ('{"Message": "%%%not base64"}', "invalid-base64"),
    ('{"Message": "aGk"}', "invalid-base64"),
    ('{"Message": ""}', "empty-message"),
    ('{"User": ""}', "invalid-alias"),
    ('{"User": 7}', "invalid-alias"),
    ('{"User": "' + "x" * 65 + '"}', "invalid-alias"),
    ('{"Message": "aGk=", "User": "bob"}', "ambiguous-frame"),
]


async def test_bad_input_gets_an_error_frame_and_a_row(connect: Connect, backend: Backend) -> None:
    """Each bad frame gets its Error code and an errors row; the sender and others carry on."""
    bad, other = await connect(), await connect()
    for text, code in BAD_FRAMES:
        await bad.ws.send_str(text)
        error = await bad.recv("Error")
        assert error["Code"] == code, text
        assert error["Error"]
        await other.say(f"still here after {code}")
        assert (await other.recv("Chat"))["Message"] == b64(f"still here after {code}")
    await bad.say("and I carry on too")
    assert (await bad.recv_chat("and I carry on too"))["Author"] == "unknown"
    kinds = [kind for (kind,) in rows(backend.db, "select kind from errors order by id")]
    assert kinds == [code for _, code in BAD_FRAMES]
    assert len(rows(backend.db, "select id from messages")) == len(BAD_FRAMES) + 1


async def test_binary_frame_closes_with_1003(connect: Connect, backend: Backend) -> None:
    """A binary frame closes that connection with 1003 and leaves an errors row."""
    bad, other = await connect(), await connect()
    await bad.ws.send_bytes(b"\x00\x01")
    msg = await bad.closed()
    assert bad.ws.close_code == 1003, msg
    await other.say("unaffected")
    assert (await other.recv("Chat"))["Message"] == b64("unaffected")
    assert rows(backend.db, "select kind from errors") == [("binary-frame",)]


async def test_oversize_frame_closes_with_1009(connect: Connect, backend: Backend) -> None:
    """A frame over max-message-bytes closes with 1009 and leaves an errors row; no message."""
    bad, other = await connect(), await connect()
    await bad.say("x" * 70_000)
    await bad.closed()
    assert bad.ws.close_code == 1009
    await other.say("unaffected")
    await other.recv("Chat")
    assert rows(backend.db, "select kind from errors") == [("protocol-error",)]
    assert rows(backend.db, "select count(*) from messages") == [(1,)]


async def test_message_is_committed_before_anyone_receives_it(
    connect: Connect, backend: Backend
) -> None:
    """Every Chat frame a client receives is already a committed row of the log."""
    sender, watcher = await connect(), await connect()
    for i in range(50):
        await sender.say(f"m{i}")
    for _ in range(50):
        frame = await watcher.recv("Chat")
        stored = rows(backend.db, "select text from messages where id = ?", frame["ID"])
        assert stored != [], frame


async def test_ids_are_in_order_for_every_client(connect: Connect) -> None:
    """Concurrent senders: every client sees the same strictly increasing ID sequence."""
    clients = [await connect() for _ in range(4)]
    await asyncio.gather(*(c.say(f"{n}-{i}") for n, c in enumerate(clients) for i in range(25)))
    sequences = [[f["ID"] for f in await c.chats(100)] for c in clients]
    assert all(seq == sequences[0] for seq in sequences)
    assert sequences[0] == sorted(set(sequences[0]))


async def test_connection_rows_follow_the_socket(connect: Connect, backend: Backend) -> None:
    """websocket_connections and users hold live connections only; close removes both rows."""
    db = backend.db
    alice = await connect(room="r1")
    await alice.alias("alice")
    assert rows(db, "select ws_id, room from websocket_connections") == [(alice.ws_id, "r1")]
    assert rows(db, "select ws_id, alias, room from users") == [(alice.ws_id, "alice", "r1")]
    await alice.close()
    await eventually(lambda: rows(db, "select * from websocket_connections") == [])
    assert rows(db, "select * from websocket_connections") == []
    assert rows(db, "select * from users") == []


async def test_unicode_round_trip(connect: Connect, backend: Backend) -> None:
    """Emoji, CJK, combining marks and RTL text reach the text column and peers intact."""
    alice, bob = await connect(), await connect()
    text = "héllo 👋 你好 e\u0301 مرحبا"
    await alice.say(text)
    frame = await bob.recv("Chat")
    assert frame["Message"] == b64(text)
    assert rows(backend.db, "select text from messages") == [(text,)]


@pytest.mark.backends("sqlite")  # refused before the log is touched
async def test_bad_room_is_refused_before_upgrade(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    """A room name with control characters is a 400, not a socket."""
    url = str(server.make_url("/ws"))
    async with session.get(url, params={"room": "a\x01b"}) as response:
        assert response.status == 400
