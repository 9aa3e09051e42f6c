"""The doorbell: delivery for several server processes sharing one PostgreSQL log.

* Appends: every message-append transaction of every process first takes one transaction-level
  advisory lock, so the sequence hands out IDs in commit order and a reader following
  "ID greater than the last one I published" can never pass over a row that commits late.
  The same statement queues a ``NOTIFY chatlog_messages``, which PostgreSQL delivers on commit.
* Delivery: a dedicated asyncpg connection ``LISTEN``s. On a notification, on this process's
  own commits, after (re)connecting and on a slow timer, one task reads the rows after the last
  ID it published, in ID order and in bounded pages, and hands them to the
  listener (the server's sockets).
  The notification is only a doorbell: a lost one, or a dropped listener, delays delivery by
  at most the timer period and loses nothing.
* Presence: every process heartbeats its ``nodes`` row; any process sweeps the rows of nodes
  silent for longer than the node timeout. Each presence change sends ``NOTIFY
  chatlog_presence`` with the room; the other processes re-read the room's user list and
  broadcast it to their own sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatlog.log.backend import Feed, Listener, Node
from chatlog.log.follow import publish_rows
from chatlog.log.model import StoredMessage
from chatlog.log.postgres import engine as pg
from chatlog.log.postgres import nodes
from chatlog.log.queries import room_aliases
from chatlog.log.schema import messages

log = logging.getLogger(__name__)

#: Channel rung after every append commit (the payload is empty: the table is the truth).
MESSAGES_CHANNEL = "chatlog_messages"
#: Channel carrying ``{"room": ..., "node": ...}`` after a presence change.
PRESENCE_CHANNEL = "chatlog_presence"
#: Key of the transaction-level advisory lock that serialises appends across processes.
APPEND_LOCK = 0x63686174  # "chat"

#: Seconds a listener connect or a catch-up read may take before the connection is presumed
#: dead (a half-open TCP connection would otherwise stall delivery silently) and replaced.
IO_TIMEOUT = 10.0

#: Run first in every append transaction: take the order lock, ring the doorbell on commit.
APPEND_PROLOGUE = text("SELECT pg_advisory_xact_lock(:key), pg_notify(:channel, '')").bindparams(
    key=APPEND_LOCK, channel=MESSAGES_CHANNEL
)
_READ_NEW = (
    "SELECT id, room, ws_id, author, raw, sent_at, kind, target_id, edited_at, deleted_at "
    "FROM messages WHERE id > $1 ORDER BY id LIMIT $2"
)


class PostgresFeed(Feed):
    """Shared-log delivery for one server process (see the module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        listener: Listener,
        node: Node,
        *,
        poll: float = 1.0,
        page: int = 1000,
    ) -> None:
        self.engine = engine
        self.listener = listener
        self.node = node.node
        self.address = node.address
        self.heartbeat = node.heartbeat
        self.node_timeout = node.timeout
        self.poll = poll
        self.page = page
        #: The highest message ID this process has published (or skipped: no local socket).
        self.last = 0
        #: Rows read from the log by the catch-up reader, and listener (re)connections made.
        self.rows_read = 0
        self.connects = 0
        self._url = engine.url.render_as_string(hide_password=False)
        self._listener: Any = None
        self._wake = asyncio.Event()
        self._presence_wake = asyncio.Event()
        self._presence_rooms: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[None]] = set()

    # --- life cycle ----------------------------------------------------------------------

    async def prepare(self) -> None:
        async with self.engine.begin() as conn:
            await nodes.heartbeat(conn, self.node, self.address)
        await self._sweep()
        async with self.engine.connect() as conn:
            # Rows committed before this process existed are history, not live traffic.
            self.last = int(await conn.scalar(select(func.max(messages.c.id))) or 0)

    async def start(self) -> None:
        await self._connect()
        self._tasks = [
            asyncio.create_task(self._deliver(), name="chatlog-fanout"),
            asyncio.create_task(self._presence(), name="chatlog-presence"),
            asyncio.create_task(self._heartbeat(), name="chatlog-heartbeat"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._spawned, return_exceptions=True)
        try:
            async with self.engine.begin() as conn:
                rooms = await nodes.remove_node(conn, self.node)
                await _notify_presence(conn, rooms, node="")
        except Exception as exc:  # the others sweep this node once its heartbeat is stale
            log.warning("could not remove this node's rows on shutdown: %s", exc)
        await self._drop_listener()

    # --- appends ---------------------------------------------------------------------------

    def committed(self, stored: list[StoredMessage]) -> None:
        # A retried nonce is answered to its sender only, and that sender is on this process.
        duplicates = [m for m in stored if m.duplicate]
        if duplicates:
            self.listener.deliver(duplicates)
        # Everything else goes the way other processes' rows go, so the order is the same.
        self._wake.set()

    # --- delivery --------------------------------------------------------------------------

    async def _connect(self) -> None:
        conn = await pg.connect(
            self._url,
            timeout=IO_TIMEOUT,
            server_settings={"application_name": f"chatlog-listener-{self.node}"},
        )
        await conn.add_listener(MESSAGES_CHANNEL, self._on_messages)
        await conn.add_listener(PRESENCE_CHANNEL, self._on_presence)
        self._listener = conn
        if self.connects:
            # Presence notifications may have been missed while the listener was down.
            self._presence_rooms.update(self.listener.rooms())
            self._presence_wake.set()
        self.connects += 1

    async def _drop_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except Exception:
                conn.terminate()  # the server does not answer: just drop the socket

    async def _deliver(self) -> None:
        self._wake.set()  # catch up once at start
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if self._listener is None or self._listener.is_closed():
                    log.warning("fan-out listener connection lost; reconnecting")
                    await self._drop_listener()
                    await self._connect()
                await self._catch_up(self._listener)
            except Exception as exc:
                log.warning("fan-out reader failed (%s: %s); retrying", type(exc).__name__, exc)
                await self._drop_listener()
                await asyncio.sleep(self.poll)

    async def _catch_up(self, conn: Any) -> None:
        """Publish every row after :attr:`last`, in ID order, a bounded page at a time."""
        while True:
            rows = await conn.fetch(_READ_NEW, self.last, self.page, timeout=IO_TIMEOUT)
            if not rows:
                return
            self.rows_read += len(rows)
            self.last = publish_rows(self.listener, rows, self.last)
            if len(rows) < self.page:
                return

    def _on_messages(self, *_args: Any) -> None:
        self._wake.set()

    # --- presence --------------------------------------------------------------------------

    def presence_changed(self, room: str, aliases: list[str] | None = None) -> None:
        self._spawn(self._announce([room]))

    def _on_presence(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            note = json.loads(payload)
            room, node = str(note["room"]), str(note["node"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed presence notification %r", payload[:200])
            return
        if node != self.node:  # this process already broadcast its own changes
            self._presence_rooms.add(room)
            self._presence_wake.set()

    async def _presence(self) -> None:
        while True:
            await self._presence_wake.wait()
            self._presence_wake.clear()
            rooms, self._presence_rooms = self._presence_rooms, set()
            here = self.listener.rooms()
            local = [room for room in rooms if room in here]
            if not local:
                continue
            try:
                async with self.engine.connect() as conn:
                    for room in local:
                        self.listener.presence(room, await room_aliases(conn, room))
            except Exception as exc:
                log.warning("could not refresh user lists: %s", exc)

    async def _announce(self, rooms: Iterable[str]) -> None:
        try:
            async with self.engine.begin() as conn:
                await _notify_presence(conn, rooms, node=self.node)
        except Exception as exc:
            log.warning("could not announce a presence change: %s", exc)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                async with self.engine.begin() as conn:
                    if await nodes.heartbeat(conn, self.node, self.address):
                        log.warning("this node was swept as dead; registering its sockets again")
                        rooms = await nodes.reregister(conn, self.node, self.listener.connections())
                        await _notify_presence(conn, rooms, node="")
                await self._sweep()
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)

    async def _sweep(self) -> None:
        async with self.engine.begin() as conn:
            rooms = await nodes.sweep_stale(conn, self.node_timeout)
            if rooms:
                log.info("swept the connections of dead nodes in %d rooms", len(rooms))
                # Empty node: every process, this one included, refreshes those rooms.
                await _notify_presence(conn, rooms, node="")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)


async def _notify_presence(conn: AsyncConnection, rooms: Iterable[str], *, node: str) -> None:
    """Queue a presence notification per room; PostgreSQL sends them when ``conn`` commits."""
    for room in sorted(rooms):
        payload = json.dumps({"room": room, "node": node})
        await conn.execute(select(func.pg_notify(PRESENCE_CHANNEL, payload)))
