"""The bench's WebSocket client: a minimal asyncio ``Protocol``, cheap per frame.

It parses unmasked server frames straight from ``data_received`` and writes masked client
frames, with one mask per connection and the mask of each payload length computed once: with
aiohttp's client, the load generator would be the bottleneck it is meant to measure. It knows
the upgrade, text frames, pings and the close handshake, which is all the bench needs;
:mod:`chatlog.bench.loadgen` subclasses it and handles the text.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import cast
from urllib.parse import urlsplit


class WebSocketClient(asyncio.Protocol):
    """One WebSocket client connection to ``url`` joining ``room``, parsing frames by hand."""

    def __init__(self, url: str, room: str) -> None:
        self.url = url
        self.room = room
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        #: Set by the subclass when the server's first frame says the client is in the room.
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.mask = os.urandom(4)
        self._masks: dict[int, int] = {}
        self.paused = False
        self._resume: asyncio.Future[None] | None = None

    def on_text(self, payload: bytearray, now: int) -> None:
        """A text frame arrived at ``now`` (``time.monotonic_ns``); subclasses handle it."""

    # protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        parts = urlsplit(self.url)
        sep = "&" if parts.query else ""
        target = f"{parts.path or '/'}?{parts.query}{sep}room={self.room}"
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if b" 101 " not in status:
                self.fail(RuntimeError(f"handshake refused: {status.decode(errors='replace')}"))
                return
            del buf[: end + 4]
            self.upgraded = True
        now = time.monotonic_ns()
        pos, n = 0, len(buf)
        on_text = self.on_text
        while n - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            if b1 < 126:
                head, length = 2, b1
            elif b1 == 126:
                if n - pos < 4:
                    break
                head, length = 4, int.from_bytes(buf[pos + 2 : pos + 4], "big")
            else:
                if n - pos < 10:
                    break
                head, length = 10, int.from_bytes(buf[pos + 2 : pos + 10], "big")
            end = pos + head + length
            if end > n:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1:
                on_text(buf[pos + head : end], now)
            elif opcode == 8:
                payload = bytes(buf[pos + head : end])
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._write_frame(0x88, payload[:2])
                if self.transport is not None:
                    self.transport.close()
            elif opcode == 9:
                self._write_frame(0x8A, bytes(buf[pos + head : end]))
            pos = end
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.close_code is None:
            self.close_code = 1006
        self.fail(ConnectionError("connection lost"))
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)

    def fail(self, exc: BaseException) -> None:
        """Fail :attr:`ready` (the connection never joined its room)."""
        if not self.ready.done():
            self.ready.set_exception(exc)

    # sending
    def _write_frame(self, first: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        n = len(payload)
        if n < 126:
            header = bytes((first, 0x80 | n))
        elif n < 65536:
            header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = self._masks.get(n)
        if mask is None:
            mask = self._masks[n] = int.from_bytes((self.mask * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(payload, "big") ^ mask).to_bytes(n, "big")
        self.transport.write(header + self.mask + masked)

    def send_text(self, payload: bytes) -> None:
        self._write_frame(0x81, payload)

    async def writable(self) -> None:
        """Wait while the transport's buffer is above its high-water mark."""
        while self.paused and self.transport is not None:
            self._resume = asyncio.get_running_loop().create_future()
            await self._resume

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._write_frame(0x88, (1000).to_bytes(2, "big"))
            self.transport.close()
