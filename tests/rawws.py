"""A raw WebSocket client over an asyncio TCP stream: it can do what well-behaved clients won't.

It writes frames byte by byte as RFC 6455 lays them out, so tests can fragment a message,
announce a giant frame and never send it, skip answering pings, or stop reading altogether.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from dataclasses import dataclass

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
