"""Messages written from outside a socket: ``chatlog broadcast`` and the HTTP API.

They are ordinary rows of ``messages``, written through the backend's own append (its lock
and, on PostgreSQL, its doorbell), so every running server delivers them live in ID order
and any resume finds them. The original's ``BroadCast`` wrote as ``system``; so do these,
unless the API's key holder names another author.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog import protocol
from chatlog.log.backend import LogBackend
from chatlog.log.model import NewMessage, StoredMessage, utcnow
from chatlog.log.schema import messages, websocket_connections

#: The ``ws_id`` of a row no socket sent (no connection has an empty ID, so a retried nonce
#: is answered to nobody's socket).
NO_SOCKET = ""


def new_message(
    room: str, text: str, *, author: str = protocol.SYSTEM_AUTHOR, nonce: str | None = None
) -> NewMessage:
    """The row of a message written by the server itself; raises ``ProtocolError``."""
    chat, raw = protocol.compose_chat(text, author=author, nonce=nonce)
    return NewMessage(
        room=room,
        ws_id=NO_SOCKET,
        author=chat.fields["Author"],
        body=chat.body,
        text=chat.text,
        raw=raw,
        fields=chat.fields,
        nonce=chat.nonce,
    )


async def append(backend: LogBackend, batch: Sequence[NewMessage]) -> list[StoredMessage]:
    """Commit ``batch`` as one transaction outside any server (rows in batch order)."""
    async with backend.writing() as session:
        return await session.append(batch, utcnow())


async def active_rooms(conn: AsyncConnection) -> list[str]:
    """Every room with a live connection or any message, sorted."""
    query = union(
        select(messages.c.room.label("room")).distinct(),
        select(websocket_connections.c.room.label("room")).distinct(),
    )
    return sorted(str(r) for r in (await conn.execute(query)).scalars())


async def room_summaries(conn: AsyncConnection) -> list[dict[str, int | str]]:
    """Each room with a message or a live connection: its message count, last ID and live
    connections (of every process), sorted by name."""
    rooms: dict[str, dict[str, int | str]] = {}

    def entry(room: str) -> dict[str, int | str]:
        return rooms.setdefault(room, {"Room": room, "Messages": 0, "LastID": 0, "Live": 0})

    counted = select(messages.c.room, func.count(), func.max(messages.c.id)).group_by(
        messages.c.room
    )
    for room, count, last in await conn.execute(counted):
        entry(room).update(Messages=int(count), LastID=int(last or 0))
    live = select(websocket_connections.c.room, func.count()).group_by(websocket_connections.c.room)
    for room, count in await conn.execute(live):
        entry(room)["Live"] = int(count)
    return [rooms[name] for name in sorted(rooms)]
