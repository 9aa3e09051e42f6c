"""WebSocket clients for the tests: ``ChatClient`` speaks the chat protocol through aiohttp's
client; ``RawClient`` writes RFC 6455 frames byte by byte and can do what well-behaved clients
won't (fragment a message, announce a giant frame and never send it, skip answering pings, stop
reading altogether)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp

TIMEOUT = 10.0


def b64(text: str, encoding: str = "utf-8") -> str:
    return base64.b64encode(text.encode(encoding)).decode()


class _Listening(Protocol):
    port: Any


def ws_url(server: _Listening, path: str = "/ws", **query: Any) -> str:
    """The WebSocket URL of ``path`` on a server listening on 127.0.0.1 (in-process or spawned)."""
    url = f"ws://127.0.0.1:{server.port}{path}"
    return f"{url}?{urlencode(query)}" if query else url


class ChatClient:
    """A real WebSocket client; ``recv`` skips frames until the wanted type arrives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.status: dict[str, Any] | None = None
        #: The user list received right after the Status frame.
        self.users: list[dict[str, str]] = []

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, url: str, **kw: Any) -> ChatClient:
        client = cls(await session.ws_connect(url, **kw))
        client.status = await client.recv("Status")
        client.users = (await client.recv("userlist"))["Users"]
        return client

    @property
    def ws_id(self) -> str:
        assert self.status is not None
        return str(self.status["WSID"])

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {msg.type!r} {msg.data!r}")
        frame = json.loads(msg.data)
        self.seen.append(frame)
        return frame  # type: ignore[no-any-return]

    async def recv(self, type_: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next()
                if frame.get("Type") == type_:
                    return frame

    async def recv_chat(self, text: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Skip frames until the Chat frame carrying ``text`` arrives."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv("Chat")
                if frame.get("Message") == b64(text):
                    return frame

    async def chats(self, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        return [await self.recv("Chat", timeout) for _ in range(count)]

    async def say(self, text: str, **extra: Any) -> None:
        await self.ws.send_str(json.dumps({"Message": b64(text), "Author": "x", **extra}))

    async def alias(self, name: str) -> dict[str, Any]:
        await self.ws.send_str(json.dumps({"User": name}))
        return await self.recv("userlist")

    async def until_users(self, *names: str, timeout: float = TIMEOUT) -> None:
        """Skip user lists until one lists exactly ``names``, in that order."""
        want = [{"User": name} for name in names]
        async with asyncio.timeout(timeout):
            while (await self.recv("userlist"))["Users"] != want:
                pass

    async def closed(self, timeout: float = TIMEOUT) -> aiohttp.WSMessage:
        """Read until the server closes; return the close message."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return msg

    async def close(self) -> None:
        await self.ws.close()


#: The ``connect`` fixture: ``await connect(room="r", since=5)`` opens a ChatClient.
Connect = Callable[..., Awaitable[ChatClient]]


# --- raw frames ---------------------------------------------------------------------------------

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def frame(opcode: int, payload: bytes, *, fin: bool = True, length: int | None = None) -> bytes:
    """One masked client frame; ``length`` overrides the announced payload length."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


@dataclass
class Frame:
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


class RawClient:
    """A TCP connection that has done the WebSocket handshake and nothing else."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        path: str = "/ws",
        *,
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
    ) -> RawClient:
        sock = socket.socket()
        if rcvbuf is not None:
            # A tiny receive window makes a client that stops reading stall the server fast.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        # A small stream limit too: asyncio would otherwise read up to 2x the limit into user
        # space on its own, and the client would not look slow to the server at all.
        limit = 1 << 20 if rcvbuf is None else max(rcvbuf, 1024)
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        client = cls(reader, writer)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        client.status = int(head.split(b" ", 2)[1])
        if client.status != 101:
            writer.close()
            raise ConnectionRefusedError(f"handshake answered {client.status}")
        return client

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_text(self, text: str) -> None:
        await self.send(frame(TEXT, text.encode()))

    async def read_frame(self, timeout: float = 10.0) -> Frame | None:
        """The next server frame, or ``None`` once the server has closed the TCP connection."""
        try:
            async with asyncio.timeout(timeout):
                b1, b2 = await self.reader.readexactly(2)
                size = b2 & 0x7F
                if size == 126:
                    size = struct.unpack("!H", await self.reader.readexactly(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
                return Frame(b1 & 0x0F, await self.reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def until_close(self, timeout: float = 10.0) -> Frame | None:
        """Skip frames until the server's close frame (or EOF: ``None``); pings go unanswered."""
        async with asyncio.timeout(timeout):
            while True:
                got = await self.read_frame(timeout)
                if got is None or got.opcode == CLOSE:
                    return got

    async def close_code(self, timeout: float = 10.0) -> int | None:
        """Wait for the server's close frame, echo it as a polite peer does; return its code."""
        got = await self.until_close(timeout)
        if got is None:
            return None
        with contextlib.suppress(ConnectionError):
            await self.send(frame(CLOSE, got.payload[:2]))
        return got.close_code

    async def eof(self, timeout: float = 10.0) -> None:
        """Read and drop everything until the server drops the TCP connection."""
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionError):
                while await self.reader.read(65536):
                    pass

    def close(self) -> None:
        self.writer.close()
