"""The ``nodes`` table on PostgreSQL: each server's heartbeat, and the sweep of dead servers.

Every timestamp here is PostgreSQL's own clock (``now()`` in UTC), never the server process's,
so clock skew between machines cannot make a live node look dead.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Boolean, ColumnElement, DateTime, delete, func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log.model import LiveConnection
from chatlog.log.schema import nodes, users, websocket_connections

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
    dead = select(websocket_connections.c.ws_id).where(
        or_(
            websocket_connections.c.node.in_(stale),
            websocket_connections.c.node.not_in(select(nodes.c.node)),
        )
    )
    result = await conn.execute(
        delete(users).where(users.c.ws_id.in_(dead)).returning(users.c.room)
    )
    rooms = set(result.scalars())
    await conn.execute(delete(websocket_connections).where(websocket_connections.c.ws_id.in_(dead)))
    await conn.execute(delete(nodes).where(nodes.c.node.in_(stale)))
    return rooms


async def remove_node(conn: AsyncConnection, node: str) -> set[str]:
    """A graceful stop: delete this node's connection rows and its ``nodes`` row."""
    mine = select(websocket_connections.c.ws_id).where(websocket_connections.c.node == node)
    result = await conn.execute(
        delete(users).where(users.c.ws_id.in_(mine)).returning(users.c.room)
    )
    rooms = set(result.scalars())
    await conn.execute(delete(websocket_connections).where(websocket_connections.c.node == node))
    await conn.execute(delete(nodes).where(nodes.c.node == node))
    return rooms


async def reregister(
    conn: AsyncConnection, node: str, clients: Iterable[LiveConnection]
) -> set[str]:
    """Put back the rows of this node's live sockets after another node swept them (this node
    missed heartbeats, e.g. a long database stall). Returns the rooms whose user lists changed."""
    rooms: set[str] = set()
    now = db_now()
    for client in clients:
        await conn.execute(
            pg_insert(websocket_connections)
            .values(
                ws_id=client.ws_id, room=client.room, node=node, remote=client.remote, opened_at=now
            )
            .on_conflict_do_nothing()
        )
        if client.alias is not None:
            await conn.execute(
                pg_insert(users)
                .values(ws_id=client.ws_id, alias=client.alias, room=client.room, updated_at=now)
                .on_conflict_do_nothing()
            )
            rooms.add(client.room)
    return rooms
