"""How committed messages and presence changes reach this process's sockets.

Two backends share one small interface:

* :class:`LocalFanout` (SQLite, one process): the writer's commit callback goes straight to
  :meth:`Hub.publish`; the writer is the only one appending, so its commits are in ID order.
* :class:`chatlog.log.postgres.doorbell.PostgresFanout` (several processes on one PostgreSQL):
  appends are serialised with an advisory lock so commit order equals ID order, a ``NOTIFY``
  rings the
  other processes, and every process (this one included) reads the new rows from the table in
  ID order and publishes them.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatlog.log import store
from chatlog.log.store import StoredMessage
from chatlog.server.hub import Hub
from chatlog.settings import Settings

log = logging.getLogger(__name__)


class Fanout(Protocol):
    """The fan-out backend of a running server."""

    async def prepare(self) -> None:
        """Before the writer starts: clean up what a previous crash left, note the log's head."""

    async def start(self) -> None:
        """After the writer started: begin delivering."""

    async def close(self) -> None:
        """Stop delivering (after the writer has drained)."""

    def on_commit(self, stored: list[StoredMessage]) -> None:
        """The writer's callback, right after a group commit, rows in ID order."""

    async def before_append(self, conn: AsyncConnection) -> None:
        """Run first in every message-append transaction of the writer."""

    def presence_changed(self, room: str) -> None:
        """This process changed the room's user list (already broadcast to its own sockets)."""


class LocalFanout:
    """One process owns the log: publish each commit directly, in the writer's order."""

    def __init__(self, engine: AsyncEngine, hub: Hub) -> None:
        self.engine = engine
        self.hub = hub

    async def prepare(self) -> None:
        swept = await store.sweep_connections(self.engine)
        if swept:
            log.info("swept %d connection rows left by a previous run", swept)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def on_commit(self, stored: list[StoredMessage]) -> None:
        self.hub.publish(stored)

    async def before_append(self, conn: AsyncConnection) -> None:
        return None

    def presence_changed(self, room: str) -> None:
        return None


def make_fanout(engine: AsyncEngine, hub: Hub, settings: Settings, node: str) -> Fanout:
    """The backend that fits the database: PostgreSQL gets the shared one, SQLite the local."""
    if engine.dialect.name == "postgresql":
        from chatlog.log.postgres.doorbell import PostgresFanout

        return PostgresFanout(
            engine,
            hub,
            node=node,
            address=f"{settings.host}:{settings.port}",
            heartbeat=settings.node_heartbeat,
            node_timeout=settings.node_timeout,
        )
    return LocalFanout(engine, hub)
