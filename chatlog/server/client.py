"""One live WebSocket connection and its bounded outgoing queue.

Fan-out hands each client a framed batch (:func:`outgoing`: the frames' WebSocket bytes,
built once and shared by every client of the room). :meth:`Client.put` writes it with one
``transport.write`` when the socket is writable and nothing is queued before it, else queues
it; the client's own writer task drains the queue, joining queued batches into one write and
waiting for the transport's flow control between writes. A client whose queue is full is too
slow to keep up: it is marked and handed to ``on_overflow``, never awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from aiohttp import WSMsgType, web

from chatlog import protocol

log = logging.getLogger(__name__)

#: Seconds a closing handshake may take before the connection is dropped.
CLOSE_TIMEOUT = 2.0
#: Most bytes the writer task joins into one write when several batches are queued.
WRITE_MAX = 256 * 1024

#: Encoded frame payloads (compact JSON), in order.
Batch = tuple[bytes, ...]
#: What a client's queue holds: the payloads and the same frames as WebSocket wire bytes.
Outgoing = tuple[Batch, bytes]


def ws_frame(payload: bytes) -> bytes:
    """One unmasked, uncompressed, final WebSocket text frame (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def outgoing(frames: Batch) -> Outgoing:
    """Frame a batch of payloads once; the result may be queued to any number of clients."""
    return frames, b"".join([ws_frame(frame) for frame in frames])


class _FlowControl(Protocol):
    @property
    def writing_paused(self) -> bool: ...


def raw_writer(ws: web.WebSocketResponse) -> tuple[asyncio.Transport, _FlowControl] | None:
    """The socket's transport and flow-control protocol, or ``None`` to use ``send_frame``.

    This is the one place that touches aiohttp internals: ``ws._writer`` (the
    ``WebSocketWriter``, with ``.transport`` and ``.protocol``) and, in :func:`_writable`,
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
    return cast(asyncio.Transport, transport), cast(_FlowControl, proto)


async def _writable(proto: _FlowControl) -> None:
    """Wait until the transport has drained below its low-water mark (see :func:`raw_writer`)."""
    await proto._drain_helper()  # type: ignore[attr-defined]


class FanoutStats:
    """Hot-path counters shared by a hub's clients (read by ``/metrics``)."""

    __slots__ = ("drops",)

    def __init__(self) -> None:
        #: Batches not queued because the client's queue was full or it was closing.
        self.drops = 0


class Client:
    """One live WebSocket connection: identity, room, alias and its outgoing queue."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        ws_id: str,
        room: str,
        remote: str | None,
        queue_size: int,
        on_overflow: Callable[[Client], None],
    ) -> None:
        self.ws = ws
        self.ws_id = ws_id
        self.room = room
        self.remote = remote
        self.alias: str | None = None
        self.closing = False
        self.stats = FanoutStats()
        self._pending: deque[Outgoing | None] = deque()
        self._limit = queue_size
        self._wakeup: asyncio.Future[None] | None = None
        self._raw: tuple[asyncio.Transport, _FlowControl] | None = None
        self._on_overflow = on_overflow
        self._task: asyncio.Task[None] | None = None
        # While resuming, live frames wait here until the backlog has been queued.
        self._held: list[tuple[int, bytes]] | None = None
        #: Loop time at which the batch being written started; None while idle. A peer that
        #: stops reading blocks the write, and Hub.kick_stalled closes it after a deadline.
        self.writing_since: float | None = None
        # Highest chat ID the greeting or the resume backlog answered (see send_chat).
        self._floor = 0

    @property
    def author(self) -> str:
        return self.alias if self.alias is not None else "unknown"

    @property
    def fast(self) -> bool:
        """Whether framed batches go straight to the transport (else through ``send_frame``)."""
        return self._raw is not None

    def start(self) -> None:
        self._raw = raw_writer(self.ws)
        self._task = asyncio.create_task(self._drain(), name=f"ws-writer-{self.ws_id}")

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one frame built for this client alone."""
        self.send_batch((protocol.encode(frame),))

    def send_batch(self, batch: Batch) -> None:
        """Queue encoded frames; an overflowing client is marked and closed, never awaited."""
        self.put(outgoing(batch))

    def put(self, item: Outgoing) -> None:
        """Write a framed batch now if nothing is queued before it, else queue it (bounded)."""
        if self.closing:
            self.stats.drops += 1
            return
        pending = self._pending
        raw = self._raw
        if not pending and raw is not None and not raw[1].writing_paused:
            transport = raw[0]
            if not transport.is_closing() and not self.ws.closed:
                transport.write(item[1])
            return
        if len(pending) >= self._limit:
            self.closing = True
            self.stats.drops += 1
            self._on_overflow(self)
            return
        pending.append(item)
        self._wake()

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send_chat(self, ids: Sequence[int], item: Outgoing) -> None:
        """Queue committed chat frames, holding them back while a resume is in progress."""
        if ids and ids[0] <= self._floor:  # ids ascend within a batch
            # The greeting (Head) or the resume backlog already covered these: a fan-out that
            # lags behind them (the PostgreSQL reader) must not send them again.
            kept = [(i, f) for i, f in zip(ids, item[0], strict=True) if i > self._floor]
            if not kept:
                return
            ids, item = [i for i, _ in kept], outgoing(tuple(f for _, f in kept))
        if self._held is not None:
            self._held.extend(zip(ids, item[0], strict=True))
        else:
            self.put(item)

    def hold(self) -> None:
        """Start holding live chat frames (a resume is about to read the backlog)."""
        self._held = []

    def release(self, after_id: int) -> None:
        """Queue the held frames newer than ``after_id``, the last ID the backlog sent."""
        held, self._held = self._held or [], None
        self._floor = max(self._floor, after_id)
        fresh = tuple(frame for msg_id, frame in held if msg_id > after_id)
        if fresh:
            self.send_batch(fresh)

    async def _drain(self) -> None:
        ws, pending = self.ws, self._pending
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not pending:
                    self._wakeup = loop.create_future()
                    try:
                        await self._wakeup
                    finally:
                        self._wakeup = None
                    continue
                if self._raw is None:
                    item = pending.popleft()
                    if item is None or ws.closed:
                        return
                    self.writing_since = loop.time()
                    for frame in item[0]:
                        await ws.send_frame(frame, WSMsgType.TEXT)
                    self.writing_since = None
                    continue
                transport, proto = self._raw
                if proto.writing_paused:
                    # The peer is not taking our bytes: Hub.kick_stalled closes it after a while.
                    self.writing_since = loop.time()
                    await _writable(proto)
                    self.writing_since = None
                    continue
                chunks: list[bytes] = []
                size, stop = 0, False
                while pending and size < WRITE_MAX:
                    item = pending.popleft()
                    if item is None:
                        stop = True
                        break
                    chunks.append(item[1])
                    size += len(item[1])
                if ws.closed or transport.is_closing():
                    return
                if chunks:
                    transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                if stop:
                    return
        except (ConnectionError, RuntimeError) as exc:
            log.debug("writer of %s stopped: %s", self.ws_id, exc)

    async def stop(self) -> None:
        """Stop the writer task after what is queued has been written."""
        if self._task is None:
            return
        self._pending.append(None)
        self._wake()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._task, CLOSE_TIMEOUT)

    async def close(self, code: int, message: str) -> None:
        """Close the socket with ``code``, dropping the peer if it does not answer in time."""
        self.closing = True
        try:
            await asyncio.wait_for(
                self.ws.close(code=code, message=message.encode()), CLOSE_TIMEOUT
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            if self._task is not None:
                self._task.cancel()
