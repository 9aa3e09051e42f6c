"""The ``nodes`` table on PostgreSQL: each server's heartbeat, and the sweep of dead servers.

Every timestamp here is PostgreSQL's own clock (``now()`` in UTC), never the server process's,
so clock skew between machines cannot make a live node look dead.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Boolean, ColumnElement, DateTime, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log import presence
from chatlog.log.schema import nodes

#: Key of the transaction-level advisory lock one sweeper at a time holds.
SWEEP_LOCK = 0x63686C73  # "chls"


def db_now() -> ColumnElement[DateTime]:
    """PostgreSQL's current time as naive UTC, the way every timestamp is stored."""
    return func.timezone("UTC", func.now(), type_=DateTime())


async def heartbeat(conn: AsyncConnection, node: str, address: str | None) -> bool:
    """Insert or refresh this node's row; ``True`` when the row had to be (re)created."""
    now = db_now()
    stmt = pg_insert(nodes).values(node=node, started_at=now, last_seen=now, address=address)
    stmt = stmt.on_conflict_do_update(index_elements=[nodes.c.node], set_={"last_seen": now})
    # ``xmax = 0`` holds for a freshly inserted row, not for one the conflict clause updated.
    created = await conn.scalar(stmt.returning(literal_column("xmax = 0", Boolean)))
    return bool(created)


async def sweep_stale(conn: AsyncConnection, silent_for: float) -> set[str] | None:
    """Delete the rows of nodes silent for more than ``silent_for`` seconds, and orphaned rows.

    Returns the rooms whose user lists changed, or ``None`` when another node is sweeping.
    """
    if not await conn.scalar(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK))):
        return None
    stale = select(nodes.c.node).where(nodes.c.last_seen < db_now() - timedelta(seconds=silent_for))
    return await presence.sweep_nodes(conn, stale)


#: Shared with SQLite (:mod:`chatlog.log.presence`).
remove_node = presence.remove_node
reregister = presence.reregister
