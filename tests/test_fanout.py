"""The optimised fan-out path: framed batches, one write per client, bounded queues."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import socket
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from chatlog.log.model import StoredMessage
from chatlog.protocol import CLOSE_SLOW_CONSUMER
from chatlog.server.keys import RUNTIME
from chatlog.server.wire import ws_frame
from tests.helpers import ServerProcess, Start, skip_or_fail
from tests.wsclients import ChatClient, Connect, b64, ws_url

# The fan-out path after a commit is the same whichever backend committed.
pytestmark = pytest.mark.backends("sqlite")


def test_ws_frame_headers_cover_all_three_length_forms() -> None:
    """ws_frame writes RFC 6455 headers: 7-bit, 16-bit and 64-bit lengths, FIN + text."""
    assert ws_frame(b"x" * 125)[:2] == bytes((0x81, 125))
    assert ws_frame(b"x" * 126)[:4] == bytes((0x81, 126, 0, 126))
    assert ws_frame(b"x" * 65536)[:10] == bytes((0x81, 127)) + (65536).to_bytes(8, "big")


async def test_a_burst_arrives_intact_and_in_order_at_many_clients(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """Messages group-committed together reach 20 clients whole, in ID order, none missing."""
    # The burst is far beyond what the default per-connection rate limit lets one socket send.
    server = await start(rate=0)
    url = ws_url(server, room="burst")
    clients = [await ChatClient.connect(session, url) for _ in range(20)]
    runtime = server.app[RUNTIME]
    assert all(c.fast for c in runtime.hub.clients()), "the raw-write path is not in use"
    texts = [f"message {i} é€😀 " + "y" * (i * 7 % 300) for i in range(300)]
    sender = clients[0]
    # Sent back to back without waiting, so the writer commits them in batches.
    await asyncio.gather(*(sender.say(text) for text in texts))
    for client in clients:
        chats = await client.chats(len(texts))
        assert [base64.b64decode(c["Message"]).decode() for c in chats] == texts
        ids = [c["ID"] for c in chats]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert runtime.writer.rows == len(texts)


async def test_one_published_batch_is_one_framed_write_that_decodes_at_every_client(
    connect: Connect, server: TestServer
) -> None:
    """A 3-message batch (7-bit, 16-bit and 64-bit frame lengths) decodes in order everywhere."""
    clients = [await connect(room="frames") for _ in range(8)]
    hub = server.app[RUNTIME].hub
    bodies = ["short", "m" * 300, "L" * 70_000]
    now = datetime(2026, 1, 1, 12, 0, 0)
    batch = [
        StoredMessage(10 + i, "frames", clients[0].ws_id, "a", {"Message": b64(body)}, now)
        for i, body in enumerate(bodies)
    ]
    delivered = hub.delivered
    hub.publish(batch)
    assert hub.delivered - delivered == len(bodies) * len(clients)
    for client in clients:
        chats = await client.chats(3)
        assert [c["ID"] for c in chats] == [10, 11, 12]
        assert [base64.b64decode(c["Message"]).decode() for c in chats] == bodies
        assert all(c["Sent"] == "2026-01-01 12:00:00" and c["Room"] == "frames" for c in chats)


class StalledClient:
    """A real socket that completes the WebSocket handshake and then stops reading."""

    def __init__(self, port: int, room: str) -> None:
        self.sock = socket.socket()
        # A small receive window, so the server's buffers fill after little data.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(b"0123456789abcdef").decode()
        self.sock.sendall(
            (
                f"GET /ws?room={room} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        assert b" 101 " in self.buf.split(b"\r\n", 1)[0]
        self.buf = self.buf.split(b"\r\n\r\n", 1)[1]

    def read_until_close(self, timeout: float = 20.0) -> int | str:
        """Read everything the server sent, then return the code of its close frame, or
        "reset" when the server reset the connection."""
        self.sock.settimeout(timeout)
        while True:
            code = self._close_code()
            if code is not None:
                return code
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return "reset"
            if not data:
                raise AssertionError("the connection ended without a close frame")
            self.buf += data

    def _close_code(self) -> int | None:
        buf, pos = self.buf, 0
        while len(buf) - pos >= 2:
            length, head = buf[pos + 1] & 0x7F, 2
            if length == 126:
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if len(buf) - pos < head + length:
                break
            if buf[pos] & 0x0F == 8:
                return int.from_bytes(buf[pos + head : pos + head + 2], "big")
            pos += head + length
        self.buf = buf[pos:]
        return None


async def test_a_client_that_stops_reading_is_closed_with_1013_and_others_carry_on(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """With its queue full, a stalled reader gets 1013 while readers keep getting every frame."""
    server = await start(client_queue=4, synchronous="NORMAL")
    url = ws_url(server, room="slow")
    readers = [await ChatClient.connect(session, url) for _ in range(3)]
    stalled = await asyncio.to_thread(StalledClient, server.port, "slow")
    metrics = server.app[RUNTIME].metrics
    hub = server.app[RUNTIME].hub
    big = "z" * 40_000
    sent = 0
    # Paced: each message is read by every reader before the next, so only the stalled
    # client falls behind. 4 MiB of kernel buffers fill in about 110 of these.
    while len(hub.rooms["slow"]) == 4 and sent < 1000:
        await readers[0].say(f"{sent} {big}")
        for reader in readers:
            await reader.recv("Chat")
        sent += 1
    assert len(hub.rooms["slow"]) == 3, "the stalled client was never dropped"
    for i in range(5):
        await readers[1].say(f"after {i}")
        for reader in readers:
            await reader.recv_chat(f"after {i}")
    code = await asyncio.to_thread(stalled.read_until_close)
    # A peer that reads nothing cannot take a close frame queued behind megabytes it never
    # read, so the server resets it; one that still reads slowly gets 1013 (README, limits).
    assert code in (CLOSE_SLOW_CONSUMER, "reset") and CLOSE_SLOW_CONSUMER == 1013
    text = metrics.exposition().decode()
    assert "chatlog_slow_consumer_closes_total 1.0" in text
    assert 'chatlog_errors_total{kind="slow-consumer"} 1.0' in text


def test_serve_runs_on_uvloop_when_asked(tmp_path: Path) -> None:
    """`serve --event-loop uvloop` fans a message out to every socket (raw writes on uvloop)."""
    if importlib.util.find_spec("uvloop") is None:
        skip_or_fail("uvloop is not installed")

    async def chat(url: str) -> list[str]:
        async with aiohttp.ClientSession() as s:
            a = await s.ws_connect(url)
            b = await s.ws_connect(url)
            for ws in (a, b):
                await ws.receive_json()  # Status
                await ws.receive_json()  # userlist
            await a.send_str('{"Message": "aGk="}')
            got = [(await ws.receive_json())["Message"] for ws in (a, b)]
            await a.close()
            await b.close()
            return got

    with ServerProcess(tmp_path / "u.db", "--event-loop", "uvloop") as proc:
        assert asyncio.run(chat(proc.url)) == ["aGk=", "aGk="]
