"""The bad-input checklist against a live server: every frame gets its documented answer.

Each refused frame gets an Error frame (the connection carries on) or a close code (the
connection ends), an ``errors`` row, and no stored message, while another client keeps
chatting throughout.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.backends import rows, scalar
from tests.helpers import eventually
from tests.wsclients import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    TEXT,
    ChatClient,
    Connect,
    RawClient,
    b64,
    frame,
)

# Frame handling does not depend on the log's backend (test_chat runs its error rows on both).
pytestmark = pytest.mark.backends("sqlite")

HI = b64("hi")


def chat(**fields: Any) -> str:
    return json.dumps({"Message": HI, **fields})


#: (what, frame text, Error code). One connection sends them all, one after another.
ERROR_CASES: list[tuple[str, str, str]] = [
    ("not JSON", "hello", "invalid-json"),
    ("truncated JSON", '{"Message": "aGk=', "invalid-json"),
    ("raw NUL inside a JSON string", '{"Message": "aGk=", "x": "a\x00b"}', "invalid-json"),
    ("empty frame", "", "invalid-json"),
    ("array", "[1, 2]", "not-an-object"),
    ("string", '"hi"', "not-an-object"),
    ("number", "42", "not-an-object"),
    ("null", "null", "not-an-object"),
    ("NaN", '{"Message": "aGk=", "n": NaN}', "invalid-number"),
    ("Infinity", '{"Message": "aGk=", "n": Infinity}', "invalid-number"),
    ("-Infinity", '{"Message": "aGk=", "n": -Infinity}', "invalid-number"),
    ("float overflow", '{"Message": "aGk=", "n": 1e400}', "invalid-number"),
    ("2**64", chat(n=2**64), "invalid-number"),
    ("5000-digit integer", '{"Message": "aGk=", "n": ' + "9" * 5000 + "}", "invalid-number"),
    ("duplicate keys", '{"Message": "aGk=", "Message": "aGk="}', "duplicate-key"),
    ("nested duplicate keys", '{"Message": "aGk=", "x": {"a": 1, "a": 2}}', "duplicate-key"),
    ("17 levels", '{"Message": "aGk=", "x": ' + "[" * 17 + "]" * 17 + "}", "too-deep"),
    ("30000 levels", "[" * 30000 + "]" * 30000, "too-deep"),
    ("lone surrogate value", '{"Message": "aGk=", "x": "\\ud800"}', "invalid-text"),
    ("lone surrogate key", '{"Message": "aGk=", "\\udc00": 1}', "invalid-text"),
    ("lone surrogate alias", '{"User": "\\ud800"}', "invalid-text"),
    ("escaped NUL in a relayed key", '{"Message": "aGk=", "x": "a\\u0000b"}', "invalid-text"),
    ("NUL in the body", json.dumps({"Message": b64("a\x00b")}), "invalid-text"),
    ("BEL in the body", json.dumps({"Message": b64("ding\x07")}), "invalid-text"),
    ("ESC in the body", json.dumps({"Message": b64("\x1b[31mred")}), "invalid-text"),
    ("C1 control in the body", json.dumps({"Message": b64("a\u0085b")}), "invalid-text"),
    ("base64 with *", json.dumps({"Message": "aGk*"}), "invalid-base64"),
    ("base64 bad padding", json.dumps({"Message": "aGk"}), "invalid-base64"),
    ("base64 url-safe alphabet", json.dumps({"Message": "-_-_"}), "invalid-base64"),
    ("base64 with a space", json.dumps({"Message": "aG k="}), "invalid-base64"),
    ("empty body", json.dumps({"Message": ""}), "empty-message"),
    ("Message not a string", json.dumps({"Message": 5}), "bad-type"),
    ("Nonce too long", chat(Nonce="n" * 65), "bad-type"),
    ("Nonce with a control char", chat(Nonce="a\tb"), "bad-type"),
    ("History not an object", json.dumps({"History": "all"}), "bad-type"),
    ("History negative Before", json.dumps({"History": {"Before": -1}}), "bad-type"),
    ("overlong alias", json.dumps({"User": "x" * 65}), "invalid-alias"),
    ("alias with ESC", json.dumps({"User": "a\x1bb"}), "invalid-alias"),
    ("alias of a zero-width space", json.dumps({"User": "\u200b"}), "invalid-alias"),
    ("blank alias", json.dumps({"User": "   "}), "invalid-alias"),
    ("no route", "{}", "unknown-frame"),
    ("two routes", json.dumps({"Message": HI, "User": "x"}), "ambiguous-frame"),
]


async def test_every_bad_frame_gets_its_error_code_and_a_row(
    connect: Connect, db_path: Path
) -> None:
    """Each malformed frame: its Error code, an errors row, nothing stored; others chat on."""
    bad, other = await connect(room="r"), await connect(room="r")
    for n, (what, text, code) in enumerate(ERROR_CASES, 1):
        await bad.ws.send_str(text)
        error = await bad.recv("Error")
        assert error["Code"] == code, what
        await eventually(lambda n=n: scalar(db_path, "select count(*) from errors") == n)
        assert scalar(db_path, "select kind from errors order by id desc limit 1") == code, what
        await other.say(f"ok after {what}")
        await other.recv_chat(f"ok after {what}")
    assert rows(db_path, "select distinct ws_id from messages") == [(other.ws_id,)]
    assert scalar(db_path, "select count(*) from messages") == len(ERROR_CASES)
    await bad.say("the bad client can still talk")
    await bad.recv_chat("the bad client can still talk")


#: (what, raw bytes after the handshake, close code, errors.kind, detail prefix)
CLOSE_CASES: list[tuple[str, bytes, int, str, str]] = [
    ("binary frame", frame(BINARY, b"\x00\x01"), 1003, "binary-frame", ""),
    ("oversize text frame", frame(TEXT, b"x" * 65537), 1009, "protocol-error", "1009"),
    (
        "fragmented giant message",
        frame(TEXT, b"[" * 16384, fin=False)
        + b"".join(frame(CONT, b"[" * 16384, fin=False) for _ in range(4))
        + frame(CONT, b"]"),
        1009,
        "protocol-error",
        "1009",
    ),
    (
        "giant frame announced, never sent",
        frame(TEXT, b"x" * 1024, length=100 * 1024 * 1024)[: 14 + 1024],
        1009,
        "protocol-error",
        "1009",
    ),
    ("invalid UTF-8", frame(TEXT, b'{"Message": "\xff\xfe"}'), 1007, "protocol-error", "1007"),
    (
        "invalid UTF-8 split across fragments",
        frame(TEXT, b'{"x": "\xe2\x82', fin=False) + frame(CONT, b'("}'),
        1007,
        "protocol-error",
        "1007",
    ),
    (
        "reserved bit set",
        frame(TEXT, b"{}").replace(b"\x81", b"\xc1", 1),
        1002,
        "protocol-error",
        "",
    ),
    ("unknown opcode", frame(0x3, b"{}"), 1002, "protocol-error", ""),
    ("fragmented ping", frame(PING, b"p", fin=False), 1002, "protocol-error", ""),
    ("ping over 125 bytes", frame(PING, b"p" * 126), 1002, "protocol-error", ""),
    ("continuation without a start", frame(CONT, b"{}"), 1002, "protocol-error", ""),
    ("close with code 1006", frame(CLOSE, struct.pack("!H", 1006)), 1002, "", ""),
    ("close with code 999", frame(CLOSE, struct.pack("!H", 999)), 1002, "", ""),
    ("close with code 2999", frame(CLOSE, struct.pack("!H", 2999)), 1002, "", ""),
]


@pytest.mark.parametrize(("what", "data", "code", "kind", "detail"), CLOSE_CASES)
async def test_frames_that_end_the_connection(
    server: TestServer,
    connect: Connect,
    db_path: Path,
    what: str,
    data: bytes,
    code: int,
    kind: str,
    detail: str,
) -> None:
    """Transport-level violations close with their code, leave a row, store nothing."""
    other = await connect(room="main")
    raw = await RawClient.connect("127.0.0.1", server.port)
    await raw.send(data)
    got = await raw.close_code()
    if what == "close with code 1006":
        # RFC 6455 wants 1002; aiohttp 3.14.5 answers 1000 (the Autobahn 7.9.5 deviation,
        # fixed upstream by aiohttp PR #13536). Either way the peer is gone and nothing stored.
        assert got in (1002, 1000)
    else:
        assert got == code, what
    if kind:
        await eventually(lambda: scalar(db_path, "select count(*) from errors") == 1)
        (row,) = rows(db_path, "select kind, detail from errors")
        assert row[0] == kind and str(row[1]).startswith(detail), row
    await other.say("still chatting")
    await other.recv_chat("still chatting")
    assert rows(db_path, "select ws_id from messages") == [(other.ws_id,)]
    await eventually(lambda: scalar(db_path, "select count(*) from websocket_connections") == 1)


async def test_frame_at_exactly_the_limit_is_stored(connect: Connect, db_path: Path) -> None:
    """A text frame of exactly max-message-bytes (65536) is accepted; one byte more is not."""
    client = await connect()
    base = chat(pad="")
    text = chat(pad="p" * (65536 - len(base)))
    assert len(text.encode()) == 65536
    await client.ws.send_str(text)
    await client.recv("Chat")
    assert scalar(db_path, "select length(raw) from messages") == 65536


async def test_whitespace_and_odd_but_valid_text_round_trips(
    connect: Connect, db_path: Path
) -> None:
    """Whitespace-only, RTL, zero-width, emoji and combining floods are stored byte-exact."""
    client = await connect()
    texts = [" ", "\t\n", "\u202eevil\u202c", "a\u200bb", "👩‍👩‍👧‍👦", "e" + "\u0301" * 500]
    for text in texts:
        await client.say(text)
        assert (await client.recv("Chat"))["Message"] == b64(text)
    assert [r[0] for r in rows(db_path, "select text from messages order by id")] == texts


async def test_unknown_keys_and_forged_server_fields_are_handled(
    connect: Connect, db_path: Path
) -> None:
    """Client-sent ID, Room, Sent and Type are overwritten by the server's values."""
    client = await connect(room="real")
    await client.say("x", ID=1, Room="other", Sent="1999-01-01 00:00:00", Type="Status")
    got = await client.recv("Chat")
    (row,) = rows(db_path, "select id, room from messages")
    assert (got["ID"], got["Room"], got["Type"]) == (row[0], "real", "Chat")
    assert got["Sent"] != "1999-01-01 00:00:00"


async def test_bad_session_does_not_disturb_a_busy_room(
    server: TestServer, connect: Connect
) -> None:
    """While one raw client sends garbage and is closed, a ChatClient sees a gap-free stream."""
    watcher = await connect()
    talker = await connect()
    for i in range(20):
        raw = await RawClient.connect("127.0.0.1", server.port)
        await raw.send(frame(TEXT, b"\xff") if i % 2 else frame(BINARY, b"x"))
        await talker.say(f"m{i}")
        await raw.close_code()
        raw.close()
    ids = [f["ID"] for f in await watcher.chats(20)]
    assert ids == list(range(ids[0], ids[0] + 20))


async def test_session_survives_many_bad_clients(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    """Fifty clients sending one bad frame each all get answers and the server carries on."""
    url = str(server.make_url("/ws"))
    clients = [await ChatClient.connect(session, url) for _ in range(50)]
    for i, client in enumerate(clients):
        await client.ws.send_str("{" * (i + 1))
    for client in clients:
        assert (await client.recv("Error"))["Code"] == "invalid-json"
    await clients[0].say("alive")
    await clients[-1].recv_chat("alive")
