"""One live WebSocket connection and its bounded outgoing queue.

Fan-out hands each client a framed batch (:func:`outgoing`: the frames' WebSocket bytes,
built once and shared by every client of the room). :meth:`Client.put` writes it with one
``transport.write`` when the socket is writable and nothing is queued before it, else queues
it; the client's own writer task drains the queue, joining queued batches into one write and
waiting for the transport's flow control between writes. The queue holds only the wire bytes
(each item once) and is bounded in batches (``--client-queue``) and in bytes
(``--client-queue-bytes``, counting frames held back during a resume or a streamed answer too).
A client whose queue is full is too slow to keep up: it is marked and handed to
``on_overflow``, never awaited. Large answers are written page by page through
:meth:`Client.drained` (see :mod:`chatlog.server.answers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import WSMsgType, web

from chatlog import protocol
from chatlog.server.wire import (
    Batch,
    FlowControl,
    Outgoing,
    outgoing,
    raw_writer,
    split_frames,
    writable,
)

log = logging.getLogger(__name__)

#: Seconds a closing handshake may take before the connection is dropped.
CLOSE_TIMEOUT = 2.0
#: Most bytes the writer task joins into one write when several batches are queued.
WRITE_MAX = 256 * 1024


class ClientGone(Exception):
    """The client closed or was closed while an answer was being written to it."""


class FanoutStats:
    """Hot-path counters shared by a hub's clients (read by ``/metrics``)."""

    __slots__ = ("drops", "peak_queued_bytes")

    def __init__(self) -> None:
        #: Batches not queued because the client's queue was full or it was closing.
        self.drops = 0
        #: The most bytes any one client has had queued or held back (``--client-queue-bytes``
        #: bounds it, give or take the one batch that found the queue empty).
        self.peak_queued_bytes = 0


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
        queue_bytes: int = 4 * 2**20,
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
        self._limit_bytes = queue_bytes
        #: Bytes in ``_pending`` plus those held back in ``_held`` and ``_deferred``.
        self.queued_bytes = 0
        # While a fragmented answer is being written, other frames wait here (wire bytes).
        self._deferred: list[bytes] | None = None
        # Futures of drained() callers, resolved when the queue is empty and the socket takes
        # writes again (or the writer task ends).
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._partial: list[bytes] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._raw: tuple[asyncio.Transport, FlowControl] | None = None
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

    def held_bytes(self) -> int:
        """Bytes this client makes the server hold: queued or held back, and what its
        transport buffers in user space."""
        raw = self._raw
        buffered = raw[0].get_write_buffer_size() if raw is not None else 0
        return self.queued_bytes + buffered

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
        if self._deferred is not None:
            # A fragmented answer is on the wire: no other data frame may come between its
            # fragments, so this waits for the answer's end (counted against the byte bound).
            if self._account(len(item)):
                self._deferred.append(item)
            return
        self._queue(item)

    def _queue(self, item: Outgoing) -> None:
        pending = self._pending
        raw = self._raw
        if not pending and raw is not None and not raw[1].writing_paused:
            transport = raw[0]
            if not transport.is_closing() and not self.ws.closed:
                transport.write(item)
            return
        if len(pending) >= self._limit or not self._account(len(item)):
            self._overflowed()
            return
        pending.append(item)
        self._wake()

    def _account(self, size: int) -> bool:
        """Count ``size`` more bytes queued or held; ``False`` (and the client closed as too
        slow) when that passes ``--client-queue-bytes`` with something already waiting."""
        total = self.queued_bytes + size
        if total > self._limit_bytes and self.queued_bytes:
            self._overflowed()
            return False
        self.queued_bytes = total
        if total > self.stats.peak_queued_bytes:
            self.stats.peak_queued_bytes = total
        return True

    def _overflowed(self) -> None:
        if not self.closing:
            self.closing = True
            self.stats.drops += 1
            self._on_overflow(self)

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send_chat(self, ids: Sequence[int], frames: Batch, item: Outgoing) -> None:
        """Queue committed chat frames (``item`` is ``frames`` framed), holding them back
        while a resume is in progress."""
        if ids and ids[0] <= self._floor:  # ids ascend within a batch
            # The greeting (Head) or the resume backlog already covered these: a fan-out that
            # lags behind them (the PostgreSQL reader) must not send them again.
            kept = [(i, f) for i, f in zip(ids, frames, strict=True) if i > self._floor]
            if not kept:
                return
            ids, frames = [i for i, _ in kept], tuple(f for _, f in kept)
            item = outgoing(frames)
        if self._held is not None:
            if not self.closing and self._account(sum(map(len, frames))):
                self._held.extend(zip(ids, frames, strict=True))
        else:
            self.put(item)

    def hold(self) -> None:
        """Start holding live chat frames (a resume is about to read the backlog)."""
        self._held = []

    def release(self, after_id: int) -> None:
        """Queue the held frames newer than ``after_id``, the last ID the backlog sent."""
        held, self._held = self._held or [], None
        self.queued_bytes -= sum(len(frame) for _, frame in held)
        self._floor = max(self._floor, after_id)
        fresh = tuple(frame for msg_id, frame in held if msg_id > after_id)
        if fresh:
            self.send_batch(fresh)

    async def drained(self) -> None:
        """Wait until everything queued was handed to the socket and it takes writes again:
        the backpressure of a large answer, which writes its next page only then. Raises
        :class:`ClientGone` when the client is closing or gone."""
        loop = asyncio.get_running_loop()
        while True:
            if self.closing or self.ws.closed or self._task is None or self._task.done():
                raise ClientGone(self.ws_id)
            raw = self._raw
            if not self._pending and (raw is None or not raw[1].writing_paused):
                return
            waiter = loop.create_future()
            self._drain_waiters.append(waiter)
            self._wake()
            await waiter

    def _notify_drained(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def write_fragment(self, wire: bytes, *, last: bool) -> None:
        """Write one piece of a fragmented answer (call after :meth:`drained`); other frames
        wait until the ``last`` piece, so none lands between fragments."""
        if self._deferred is None:
            self._deferred = []
        self._queue(wire)
        if last:
            deferred, self._deferred = self._deferred, None
            self.queued_bytes -= sum(map(len, deferred))
            for item in deferred:
                self.put(item)

    async def _drain(self) -> None:
        ws, pending = self.ws, self._pending
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not pending:
                    if self._drain_waiters:
                        raw = self._raw
                        if raw is not None and raw[1].writing_paused:
                            # A large answer waits for the peer: the watchdog sees it too.
                            self.writing_since = loop.time()
                            await writable(raw[1])
                            self.writing_since = None
                            continue
                        self._notify_drained()
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
                    self.queued_bytes -= len(item)
                    self.writing_since = loop.time()
                    await self._send_frames(item)
                    self.writing_since = None
                    continue
                transport, proto = self._raw
                if proto.writing_paused:
                    # The peer is not taking our bytes: Hub.kick_stalled closes it after a while.
                    self.writing_since = loop.time()
                    await writable(proto)
                    self.writing_since = None
                    continue
                chunks: list[bytes] = []
                size, stop = 0, False
                while pending and size < WRITE_MAX:
                    item = pending.popleft()
                    if item is None:
                        stop = True
                        break
                    chunks.append(item)
                    size += len(item)
                self.queued_bytes -= size
                if ws.closed or transport.is_closing():
                    return
                if chunks:
                    transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                if stop:
                    return
        except (ConnectionError, RuntimeError) as exc:
            log.debug("writer of %s stopped: %s", self.ws_id, exc)
        finally:
            self._notify_drained()

    async def _send_frames(self, wire: bytes) -> None:
        """The ``send_frame`` fallback (see :func:`raw_writer`): aiohttp frames each payload
        itself, so a fragmented answer's pieces are joined into one message here."""
        parts = self._partial  # the fragments of a message whose end is still to come
        for opcode, payload in split_frames(wire):
            parts.append(payload)
            if opcode & 0x80:
                await self.ws.send_frame(b"".join(parts), WSMsgType.TEXT)
                parts.clear()

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
