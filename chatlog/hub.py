"""Live sockets and fan-out.

Each connection owns a bounded queue of outgoing batches drained by its own task, so fan-out
never awaits one client after another: a committed batch is encoded once per message and handed
to every queue of the room with ``put_nowait``. A client whose queue is full is too slow to keep
up; it is closed with :data:`CLOSE_SLOW_CONSUMER` and everyone else carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from chatlog import protocol
from chatlog.store import StoredMessage

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Close code for a client whose outgoing queue overflowed (RFC 6455 "Try Again Later").
CLOSE_SLOW_CONSUMER = WSCloseCode.TRY_AGAIN_LATER
#: Seconds a closing handshake may take before the connection is dropped.
CLOSE_TIMEOUT = 2.0

Batch = tuple[bytes, ...]


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
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=queue_size)
        self._on_overflow = on_overflow
        self._task: asyncio.Task[None] | None = None
        # While resuming, live frames wait here until the backlog has been queued.
        self._held: list[tuple[int, bytes]] | None = None
        #: Loop time at which the batch being written started; None while idle. A peer that
        #: stops reading blocks the write, and Hub.kick_stalled closes it after a deadline.
        self.writing_since: float | None = None

    @property
    def author(self) -> str:
        return self.alias if self.alias is not None else "unknown"

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name=f"ws-writer-{self.ws_id}")

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one frame built for this client alone."""
        self.send_batch((protocol.encode(frame),))

    def send_batch(self, batch: Batch) -> None:
        """Queue encoded frames; an overflowing client is marked and closed, never awaited."""
        if self.closing:
            return
        try:
            self._queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.closing = True
            self._on_overflow(self)

    def send_chat(self, msg_id: int, frame: bytes) -> None:
        """Queue one committed chat frame, holding it back while a resume is in progress."""
        if self._held is not None:
            self._held.append((msg_id, frame))
        else:
            self.send_batch((frame,))

    def hold(self) -> None:
        """Start holding live chat frames (a resume is about to read the backlog)."""
        self._held = []

    def release(self, after_id: int) -> None:
        """Queue the held frames newer than ``after_id``, the last ID the backlog sent."""
        held, self._held = self._held or [], None
        fresh = tuple(frame for msg_id, frame in held if msg_id > after_id)
        if fresh:
            self.send_batch(fresh)

    async def _drain(self) -> None:
        ws = self.ws
        loop = asyncio.get_running_loop()
        try:
            while True:
                batch = await self._queue.get()
                if batch is None or ws.closed:
                    return
                self.writing_since = loop.time()
                for frame in batch:
                    await ws.send_frame(frame, WSMsgType.TEXT)
                self.writing_since = None
        except (ConnectionError, RuntimeError) as exc:
            log.debug("writer of %s stopped: %s", self.ws_id, exc)

    async def stop(self) -> None:
        """Stop the writer task after what is queued has been written."""
        if self._task is None:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
        if self._queue.full():
            self._task.cancel()
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


class Hub:
    """Every live connection of this process, by room, in join order."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, Client]] = {}
        self.delivered = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return sum(len(clients) for clients in self.rooms.values())

    def clients(self) -> Iterable[Client]:
        for room in list(self.rooms.values()):
            yield from list(room.values())

    def add(self, client: Client) -> None:
        self.rooms.setdefault(client.room, {})[client.ws_id] = client

    def remove(self, client: Client) -> None:
        room = self.rooms.get(client.room)
        if room is not None:
            room.pop(client.ws_id, None)
            if not room:
                del self.rooms[client.room]

    def publish(self, stored: list[StoredMessage]) -> None:
        """Fan committed messages out to their rooms, in ID order, encoding each frame once."""
        for message in stored:
            room = self.rooms.get(message.room)
            if not room:
                continue
            frame = protocol.encode(
                protocol.chat_frame(
                    message.fields,
                    author=message.author,
                    msg_id=message.id,
                    room=message.room,
                    sent_at=message.sent_at,
                )
            )
            if message.duplicate:
                # A retried nonce: only the retrying sender hears back, with the original.
                retrier = room.get(message.ws_id)
                if retrier is not None:
                    retrier.send_batch((frame,))
                continue
            for client in list(room.values()):
                client.send_chat(message.id, frame)
            self.delivered += len(room)

    def kick_stalled(self, deadline: float) -> int:
        """Close, as slow consumers, clients whose socket has not taken a write for
        ``deadline`` seconds; return how many."""
        now, kicked = asyncio.get_running_loop().time(), 0
        for client in list(self.clients()):
            since = client.writing_since
            if not client.closing and since is not None and now - since > deadline:
                client.closing = True
                client._on_overflow(client)
                kicked += 1
        return kicked

    def find(self, room: str, ws_id: str) -> Client | None:
        return self.rooms.get(room, {}).get(ws_id)

    def broadcast(self, room: str, frame: dict[str, Any]) -> None:
        """Send one frame to every connection of a room."""
        clients = self.rooms.get(room)
        if not clients:
            return
        batch = (protocol.encode(frame),)
        for client in list(clients.values()):
            client.send_batch(batch)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run a background task the hub keeps a reference to until it ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close_all(self, code: int, message: str) -> None:
        """Close every socket (shutdown), concurrently."""
        await asyncio.gather(
            *(client.close(code, message) for client in self.clients()), return_exceptions=True
        )
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
