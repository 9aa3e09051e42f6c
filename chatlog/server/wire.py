"""WebSocket wire bytes, built by the server itself: framing (RFC 6455 section 5.2) and the
one reach into aiohttp's transport that lets a client write pre-framed bytes in one call."""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from aiohttp import web

#: Encoded frame payloads (compact JSON), in order.
Batch = tuple[bytes, ...]
#: What a client's queue holds: WebSocket wire bytes of one or more frames (nothing else).
Outgoing = bytes

#: Opcode bytes (FIN bit and opcode) of a whole text frame, a first fragment, a middle one
#: and the last one of a fragmented text message (RFC 6455 section 5.4).
WHOLE, FIRST, MIDDLE, LAST = 0x81, 0x01, 0x00, 0x80


def ws_frame(payload: bytes, opcode: int = WHOLE) -> bytes:
    """One unmasked, uncompressed WebSocket data frame (RFC 6455 section 5.2); a final text
    frame unless ``opcode`` says it is a fragment."""
    n = len(payload)
    if n < 126:
        return bytes((opcode, n)) + payload
    if n < 65536:
        return bytes((opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((opcode, 127)) + n.to_bytes(8, "big") + payload


def outgoing(frames: Batch) -> Outgoing:
    """Frame a batch of payloads once; the result may be queued to any number of clients."""
    return b"".join([ws_frame(frame) for frame in frames])


def split_frames(wire: bytes) -> list[tuple[int, bytes]]:
    """The (opcode byte, payload) of each frame :func:`ws_frame` built into ``wire``."""
    frames, pos = [], 0
    view = memoryview(wire)
    while pos < len(wire):
        opcode, n, head = wire[pos], wire[pos + 1], 2
        if n == 126:
            n, head = int.from_bytes(view[pos + 2 : pos + 4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(view[pos + 2 : pos + 10], "big"), 10
        frames.append((opcode, bytes(view[pos + head : pos + head + n])))
        pos += head + n
    return frames


class FlowControl(Protocol):
    @property
    def writing_paused(self) -> bool: ...


def raw_writer(ws: web.WebSocketResponse) -> tuple[asyncio.Transport, FlowControl] | None:
    """The socket's transport and flow-control protocol, or ``None`` to use ``send_frame``.

    This is the one place that touches aiohttp internals: ``ws._writer`` (the
    ``WebSocketWriter``, with ``.transport`` and ``.protocol``) and, in :func:`writable`,
    the protocol's ``_drain_helper``. aiohttp has no public API to write pre-framed bytes, and
    going through ``send_frame`` once per frame costs a syscall per frame. When a future
    aiohttp renames them, or the socket compresses, this returns ``None`` and the client
    falls back to ``send_frame``: slower, equally correct.
    """
    writer = getattr(ws, "_writer", None)
    transport = getattr(writer, "transport", None)
    proto = getattr(writer, "protocol", None)
    # Duck-typed: uvloop's transports are not asyncio.Transport subclasses.
    if (
        ws.compress
        or not callable(getattr(transport, "write", None))
        or not callable(getattr(transport, "is_closing", None))
        or not isinstance(getattr(proto, "writing_paused", None), bool)
        or not callable(getattr(proto, "_drain_helper", None))
    ):
        return None
    return cast(asyncio.Transport, transport), cast(FlowControl, proto)


async def writable(proto: FlowControl) -> None:
    """Wait until the transport has drained below its low-water mark (see :func:`raw_writer`)."""
    await proto._drain_helper()  # type: ignore[attr-defined]
