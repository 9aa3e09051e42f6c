"""Live sockets and fan-out.

A committed batch is encoded once per message and framed once per room: every chat frame's
WebSocket bytes (header and payload; server frames are unmasked and uncompressed) are built
once and the frames of one commit are joined into one ``bytes`` shared by every client of the
room. Each client then gets that batch with **one** ``transport.write``: written at once when
its socket is writable and nothing is queued before it, else queued in a bounded queue that
its own writer task drains, joining several queued batches into one write and waiting for
the transport's flow control between writes. So fan-out never awaits one client after
another, the per-frame ``send`` syscall (the dominant cost, see the README's Performance
section) becomes one per client per commit, and order is kept: nothing is written directly
while anything is queued. A client whose queue is full is too slow to keep up; it is closed
with :data:`chatlog.protocol.CLOSE_SLOW_CONSUMER` and everyone else carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Coroutine, Iterable
from typing import Any, TypeVar

from chatlog import protocol
from chatlog.log.model import LiveConnection, StoredMessage
from chatlog.server.client import Client, FanoutStats
from chatlog.server.wire import outgoing

log = logging.getLogger(__name__)
T = TypeVar("T")


class Hub:
    """Every live connection of this process, by room, in join order."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, Client]] = {}
        self.delivered = 0
        self.published = 0
        self.stats = FanoutStats()
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return sum(len(clients) for clients in self.rooms.values())

    def clients(self) -> Iterable[Client]:
        for room in list(self.rooms.values()):
            yield from list(room.values())

    def add(self, client: Client) -> None:
        client.stats = self.stats
        self.rooms.setdefault(client.room, {})[client.ws_id] = client

    def remove(self, client: Client) -> None:
        room = self.rooms.get(client.room)
        if room is not None:
            room.pop(client.ws_id, None)
            if not room:
                del self.rooms[client.room]

    def publish(self, stored: list[StoredMessage]) -> None:
        """Fan committed messages out to their rooms in ID order: each message is encoded and
        framed once, and each room gets the frames of this commit as one shared batch."""
        runs: dict[str, tuple[list[int], list[bytes]]] = {}
        for message in stored:
            room = self.rooms.get(message.room)
            if not room:
                continue
            frame = protocol.encode(message.frame())
            if message.duplicate:
                # A retried nonce: only the retrying sender hears back, with the original,
                # after what the room was sent before it in this commit.
                self._fan_out(message.room, runs.pop(message.room, None))
                retrier = room.get(message.ws_id)
                if retrier is not None:
                    retrier.send_batch((frame,))
                continue
            run = runs.get(message.room)
            if run is None:
                run = runs[message.room] = ([], [])
            run[0].append(message.id)
            run[1].append(frame)
        for name, run in runs.items():
            self._fan_out(name, run)

    def _fan_out(self, name: str, run: tuple[list[int], list[bytes]] | None) -> None:
        room = self.rooms.get(name)
        if run is None or not room:
            return
        ids, frame_list = run
        frames = tuple(frame_list)
        item = outgoing(frames)
        self.delivered += len(frames) * len(room)
        self.published += len(frames)
        # list(): a client that overflows is removed from the room during the loop.
        for client in list(room.values()):
            client.send_chat(ids, frames, item)

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
        item = outgoing((protocol.encode(frame),))
        for client in list(clients.values()):
            client.put(item)

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


class HubListener:
    """The hub as the log's feed sees it (a :class:`chatlog.log.backend.Listener`)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def rooms(self) -> Collection[str]:
        return self.hub.rooms.keys()

    def deliver(self, stored: list[StoredMessage]) -> None:
        self.hub.publish(stored)

    def presence(self, room: str, aliases: list[str]) -> None:
        self.hub.broadcast(room, protocol.userlist_frame(aliases))

    def connections(self) -> list[LiveConnection]:
        return [LiveConnection(c.ws_id, c.room, c.remote, c.alias) for c in self.hub.clients()]


async def watch_stalled(hub: Hub, deadline: float) -> None:
    """Forever: close clients whose socket has refused our writes for ``deadline`` seconds.

    The outgoing queue overflow (``--client-queue``) catches a stalled reader in a busy room;
    this catches one in a quiet room, where the queue would take minutes to fill.
    """
    while True:
        await asyncio.sleep(min(1.0, deadline / 4))
        hub.kick_stalled(deadline)
