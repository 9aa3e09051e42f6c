"""Presence and error writes: small ops the writer runs in queue order (see ``Writer.execute``).

Each function returns an :data:`~chatlog.log.backend.Op`; the same SQL runs on both backends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log.model import LiveConnection, Op, utcnow
from chatlog.log.queries import room_aliases
from chatlog.log.schema import errors, nodes, users, websocket_connections


def open_connection(ws_id: str, room: str, node: str, remote: str | None) -> Op:
    """Record a new socket."""

    async def op(conn: AsyncConnection) -> None:
        await conn.execute(
            insert(websocket_connections).values(
                ws_id=ws_id, room=room, node=node, remote=remote, opened_at=utcnow()
            )
        )

    return op


def set_alias(ws_id: str, room: str, alias: str) -> Op:
    """Set or replace the alias; the op returns the room's new user list."""

    async def op(conn: AsyncConnection) -> list[str]:
        await conn.execute(delete(users).where(users.c.ws_id == ws_id))
        await conn.execute(
            insert(users).values(ws_id=ws_id, alias=alias, room=room, updated_at=utcnow())
        )
        return await room_aliases(conn, room)

    return op


def close_connection(ws_id: str, room: str) -> Op:
    """Remove the connection and its alias; the op returns the room's new user list."""

    async def op(conn: AsyncConnection) -> list[str]:
        await conn.execute(delete(users).where(users.c.ws_id == ws_id))
        await conn.execute(
            delete(websocket_connections).where(websocket_connections.c.ws_id == ws_id)
        )
        return await room_aliases(conn, room)

    return op


def record_error(ws_id: str | None, kind: str, detail: str) -> Op:
    """Append a row to ``errors``."""

    async def op(conn: AsyncConnection) -> None:
        await conn.execute(
            insert(errors).values(
                occurred_at=utcnow(), ws_id=ws_id, kind=kind, detail=detail[:2000]
            )
        )

    return op


async def sweep_connections(conn: AsyncConnection, node: str | None) -> int:
    """Delete connection rows (and their aliases): ``node``'s, or every one for ``None``."""
    stale = select(websocket_connections.c.ws_id)
    if node is not None:
        stale = stale.where(websocket_connections.c.node == node)
    await conn.execute(delete(users).where(users.c.ws_id.in_(stale)))
    result = await conn.execute(
        delete(websocket_connections).where(websocket_connections.c.ws_id.in_(stale))
    )
    return int(result.rowcount or 0)


# --- several server processes on one log: the rows of nodes that are gone -------------------


async def delete_connections(conn: AsyncConnection, dead: Select[Any]) -> set[str]:
    """Delete the connection rows (and aliases) whose ``ws_id`` ``dead`` selects; the rooms
    whose user lists changed."""
    result = await conn.execute(
        delete(users).where(users.c.ws_id.in_(dead)).returning(users.c.room)
    )
    rooms = set(result.scalars())
    await conn.execute(delete(websocket_connections).where(websocket_connections.c.ws_id.in_(dead)))
    return rooms


async def sweep_nodes(conn: AsyncConnection, stale: Select[Any]) -> set[str]:
    """Delete the nodes ``stale`` selects, their connection rows, and rows of no node at all;
    the rooms whose user lists changed."""
    dead = select(websocket_connections.c.ws_id).where(
        or_(
            websocket_connections.c.node.in_(stale),
            websocket_connections.c.node.not_in(select(nodes.c.node)),
        )
    )
    rooms = await delete_connections(conn, dead)
    await conn.execute(delete(nodes).where(nodes.c.node.in_(stale)))
    return rooms


async def remove_node(conn: AsyncConnection, node: str) -> set[str]:
    """A graceful stop: delete this node's connection rows and its ``nodes`` row."""
    mine = select(websocket_connections.c.ws_id).where(websocket_connections.c.node == node)
    rooms = await delete_connections(conn, mine)
    await conn.execute(delete(nodes).where(nodes.c.node == node))
    return rooms


async def reregister(
    conn: AsyncConnection, node: str, clients: Iterable[LiveConnection]
) -> set[str]:
    """Put back the rows of this node's live sockets after another node swept them (this node
    missed heartbeats, e.g. a long database stall). Returns the rooms whose user lists changed."""
    clients = list(clients)
    ids = [c.ws_id for c in clients]
    have = set(
        (
            await conn.execute(
                select(websocket_connections.c.ws_id).where(websocket_connections.c.ws_id.in_(ids))
            )
        ).scalars()
    )
    aliased = set(
        (await conn.execute(select(users.c.ws_id).where(users.c.ws_id.in_(ids)))).scalars()
    )
    rooms: set[str] = set()
    now = utcnow()
    for client in clients:
        if client.ws_id not in have:
            await conn.execute(
                insert(websocket_connections).values(
                    ws_id=client.ws_id,
                    room=client.room,
                    node=node,
                    remote=client.remote,
                    opened_at=now,
                )
            )
        if client.alias is not None and client.ws_id not in aliased:
            await conn.execute(
                insert(users).values(
                    ws_id=client.ws_id, alias=client.alias, room=client.room, updated_at=now
                )
            )
            rooms.add(client.room)
    return rooms
