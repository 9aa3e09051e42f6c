"""Presence and error writes: small ops the writer runs in queue order (see ``Writer.execute``).

Each function returns an :data:`~chatlog.log.backend.Op`; the same SQL runs on both backends.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log.model import Op, utcnow
from chatlog.log.queries import room_aliases
from chatlog.log.schema import errors, users, websocket_connections


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
