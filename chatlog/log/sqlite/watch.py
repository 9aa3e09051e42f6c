"""Delivery for one server process on a SQLite file that other processes write too.

Other writers are ``chatlog broadcast``, the HTTP API of another server, or another
``chatlog serve`` on the same file. SQLite has no notifications, so a dedicated read
connection asks ``PRAGMA data_version`` on a short idle timer (:data:`POLL`): the number
changes when any other connection commits, and asking costs a few microseconds (it reads
the WAL index in shared memory, no disk). When it changed, the :class:`~chatlog.log.follow.
Follower` reads the rows after the last ID delivered, in ID order. Own commits go straight
to the sockets when their first ID follows the last one delivered, else through that read
(:mod:`chatlog.log.follow`), so no client sees IDs out of order.

Presence works as on PostgreSQL: each process heartbeats its ``nodes`` row and sweeps dead
nodes' rows (:mod:`.nodes`); while other nodes exist, a change of a room's ``users`` rows
(seen through ``data_version`` and a cheap per-room fingerprint) makes this process re-read
that room's user list and send it to its sockets when it differs from the last one sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatlog.log import presence
from chatlog.log.backend import Feed, Listener, Node
from chatlog.log.follow import Follower, Row
from chatlog.log.model import StoredMessage
from chatlog.log.queries import room_aliases
from chatlog.log.sqlite import nodes
from chatlog.log.sqlite.engine import BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

#: Seconds between two ``data_version`` checks of an idle server: a foreign row waits at
#: most this long (plus its read) before it is on the sockets.
POLL = 0.025
#: Seconds :meth:`SqliteFeed.close` waits for its loops to finish their database call.
STOP_TIMEOUT = 5.0
_READ_AFTER = (
    "SELECT id, room, ws_id, author, raw, sent_at, kind, target_id, edited_at, deleted_at "
    "FROM messages WHERE id > ? ORDER BY id LIMIT ?"
)
#: Per room: a fingerprint of its ``users`` rows (a join adds a newer ``updated_at``, a
#: leave lowers the count).
_FINGERPRINT = "SELECT room, count(*), max(updated_at) FROM users WHERE room IN ({}) GROUP BY room"


class SqliteFeed(Feed):
    """Shared-file delivery and presence for one server process (module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        path: Path,
        listener: Listener,
        node: Node,
        *,
        poll: float = POLL,
        hold: asyncio.Lock | None = None,
    ) -> None:
        self.engine = engine
        self.path = path
        self.listener = listener
        self.node = node
        self.poll = poll
        #: The writer's hold around ops and their scrub (see ``SqliteBackend.delivery_hold``).
        self.hold = hold or asyncio.Lock()
        self.address = nodes.address_of(node.address)
        self.follower = Follower(listener, self._read_after)
        #: ``data_version`` checks made, and those that found another connection's commit.
        self.checks = 0
        self.changes = 0
        #: Whether other server processes have a ``nodes`` row (then presence is polled).
        self.shared = False
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="chatlog-sqlite-watch")
        self._version = -1
        self._wake = asyncio.Event()
        #: Set by :meth:`close`: the loops end between database calls, never inside one (a
        #: task cancelled mid-call leaves SQLAlchemy a pooled connection it cannot reset).
        self._stop = asyncio.Event()
        self._fingerprints: dict[str, tuple[int, str]] = {}
        self._sent: dict[str, list[str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        #: A sweep changed user lists: refresh them even when no other node is left.
        self._swept = False

    # --- life cycle ----------------------------------------------------------------------

    async def prepare(self) -> None:
        async with self._write() as conn:
            await nodes.heartbeat(conn, self.node.node, self.address)
        await self._sweep()
        self._db = await self._on_thread(self._open)
        self._version = self._data_version()
        # Rows committed before this process existed are history, not live traffic.
        head = await self._on_thread(self._query, "SELECT max(id) FROM messages", ())
        self.follower.last = int(head[0][0] or 0)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA query_only=ON")
        return db

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._watch(), name="chatlog-sqlite-watch"),
            asyncio.create_task(self._heartbeat(), name="chatlog-heartbeat"),
        ]

    async def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._tasks:
            _done, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            async with self._write() as conn:
                await presence.remove_node(conn, self.node.node)
        except Exception as exc:  # the others sweep this node: its process is gone
            log.warning("could not remove this node's rows on shutdown: %s", exc)
        if self._db is not None:
            await self._on_thread(self._db.close)
        self._thread.shutdown(wait=False)

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One ``BEGIN IMMEDIATE`` transaction beside the writer's."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(immediate=True)
            async with conn.begin():
                yield conn

    # --- delivery --------------------------------------------------------------------------

    def committed(self, stored: list[StoredMessage]) -> None:
        if not self.follower.committed(stored):
            self._wake.set()

    def _data_version(self) -> int:
        assert self._db is not None
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _query(self, sql: str, params: Sequence[Any]) -> list[Row]:
        assert self._db is not None
        return self._db.execute(sql, params).fetchall()

    async def _on_thread(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, func, *args)

    async def _read_after(self, after: int, limit: int) -> list[Row]:
        async with self.hold:
            rows: list[Row] = await self._on_thread(self._query, _READ_AFTER, (after, limit))
        return rows

    async def _watch(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self._wake.wait()
            if self._stop.is_set():
                return
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                self.checks += 1
                version = self._data_version()
                if version == self._version and not woken:
                    continue
                self.changes += version != self._version
                self._version = version
                await self.follower.catch_up()
                if self.shared or self._swept:
                    self._swept = False
                    await self._refresh_presence()
            except Exception as exc:
                log.warning("reading other writers' rows failed (%s); retrying", exc)
                await asyncio.sleep(self.poll)

    # --- presence --------------------------------------------------------------------------

    def presence_changed(self, room: str, aliases: list[str] | None = None) -> None:
        if aliases is not None:
            self._sent[room] = aliases

    async def _refresh_presence(self) -> None:
        rooms = list(self.listener.rooms())
        if not rooms:
            return
        sql = _FINGERPRINT.format(", ".join("?" * len(rooms)))
        found = {
            r[0]: (int(r[1]), str(r[2])) for r in await self._on_thread(self._query, sql, rooms)
        }
        changed = [
            room for room in rooms if found.get(room, (0, "")) != self._fingerprints.get(room)
        ]
        self._fingerprints = {room: found.get(room, (0, "")) for room in rooms}
        if not changed:
            return
        async with self.engine.connect() as conn:
            for room in changed:
                aliases = await room_aliases(conn, room)
                if self._sent.get(room) != aliases:
                    self._sent[room] = aliases
                    self.listener.presence(room, aliases)

    async def _heartbeat(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.node.heartbeat):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            try:
                async with self._write() as conn:
                    if await nodes.heartbeat(conn, self.node.node, self.address):
                        log.warning("this node was swept as dead; registering its sockets again")
                        await presence.reregister(conn, self.node.node, self.listener.connections())
                await self._sweep()
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)

    async def _sweep(self) -> None:
        async with self._write() as conn:
            rooms = await nodes.sweep_dead(conn, self.node.timeout, self.node.node)
            self.shared = await nodes.others_alive(conn, self.node.node) > 0
        if rooms:
            log.info("swept the connections of dead nodes in %d rooms", len(rooms))
            self._swept = True
            self._wake.set()  # the fingerprints of those rooms changed: refresh them
