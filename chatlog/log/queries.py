"""The server's reads of the log: the :class:`LogView` interface, and its SQLAlchemy Core
implementation.

A :class:`LogView` is one read: the greeting reads the room's head and user list, a resume
its backlog, a ``History`` request a page of scroll-back, a ``Search`` its hits. Rows come
back as :class:`~chatlog.log.model.StoredMessage`; :mod:`chatlog.protocol` makes the frames.

The server's hot reads go through each backend's driver directly (SQLite:
:mod:`chatlog.log.sqlite.reads`; PostgreSQL: :mod:`chatlog.log.postgres.reads`): a resume or
``History`` is a handful of small indexed queries, and SQLAlchemy's async layer cost about
1 ms for each of them. :class:`CoreView` is the same reads in SQLAlchemy Core on an
:class:`~sqlalchemy.ext.asyncio.AsyncConnection`: the reference the driver views are tested
against, and the view of a database in memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log.model import StoredMessage, stored_fields
from chatlog.log.schema import messages, retention, users, websocket_connections
from chatlog.log.search import SearchIndex, SearchRequest

#: The columns a :class:`StoredMessage` is made of.
MESSAGE_COLUMNS = (
    messages.c.id,
    messages.c.room,
    messages.c.ws_id,
    messages.c.author,
    messages.c.raw,
    messages.c.sent_at,
    messages.c.kind,
    messages.c.target_id,
    messages.c.edited_at,
    messages.c.deleted_at,
)
#: The same columns, for the driver views' SQL (one table, so no prefix is needed).
MESSAGE_SQL = ", ".join(c.name for c in MESSAGE_COLUMNS)


def stored_message(r: Any) -> StoredMessage:
    """A row of :data:`MESSAGE_COLUMNS` as a stored message (in its current state)."""
    return StoredMessage(
        r.id,
        r.room,
        r.ws_id,
        r.author,
        stored_fields(r.raw),
        r.sent_at,
        kind=r.kind,
        target=r.target_id,
        edited_at=r.edited_at,
        deleted_at=r.deleted_at,
    )


def stored(rows: Iterable[Any]) -> list[StoredMessage]:
    """Rows of :data:`MESSAGE_COLUMNS` as stored messages."""
    return [stored_message(r) for r in rows]


def stored_tuples(
    rows: Iterable[Sequence[Any]], when: Callable[[Any], datetime]
) -> list[StoredMessage]:
    """Driver rows of :data:`MESSAGE_SQL` (in its order) as stored messages; ``when`` makes
    the driver's timestamp a naive UTC ``datetime`` (SQLite stores text, asyncpg decodes)."""
    out = []
    for msg_id, room, ws_id, author, raw, sent_at, kind, target, edited, deleted in rows:
        out.append(
            StoredMessage(
                msg_id,
                room,
                ws_id,
                author,
                stored_fields(raw),
                when(sent_at),
                kind=kind,
                target=target,
                edited_at=None if edited is None else when(edited),
                deleted_at=None if deleted is None else when(deleted),
            )
        )
    return out


async def room_aliases(conn: AsyncConnection, room: str) -> list[str]:
    """The room's online users in join order (the order their connections opened)."""
    rows = await conn.execute(
        select(users.c.alias)
        .join(websocket_connections, websocket_connections.c.ws_id == users.c.ws_id)
        .where(users.c.room == room)
        .order_by(websocket_connections.c.opened_at, websocket_connections.c.ws_id)
    )
    return list(rows.scalars())


class LogView(ABC):
    """The server's reads (from :meth:`chatlog.log.backend.LogBackend.view`), every one
    bounded by its ``limit`` and answered from an index."""

    @abstractmethod
    async def room_head(self, room: str) -> int:
        """The room's last message ID, 0 when it has none."""

    @abstractmethod
    async def room_aliases(self, room: str) -> list[str]:
        """The room's online users in join order."""

    @abstractmethod
    async def room_floor(self, room: str) -> int:
        """The newest ID retention removed from ``room`` (0: nothing was ever removed)."""

    @abstractmethod
    async def after(
        self, room: str, after: int, upto: int, limit: int, *, chat_only: bool = False
    ) -> list[StoredMessage]:
        """Messages of the room with ``after < id <= upto``, oldest first, at most ``limit``
        (a resume's backlog: edit and delete events included, unless ``chat_only``)."""

    @abstractmethod
    async def before(self, room: str, before: int | None, limit: int) -> list[StoredMessage]:
        """Up to ``limit`` chat messages of the room older than ``before``, oldest first, in
        their current state (edit and delete events are already applied to them)."""

    @abstractmethod
    async def ids_before(self, room: str, before: int | None, limit: int) -> list[int]:
        """The IDs of up to ``limit`` newest chat messages of the room older than ``before``,
        newest first (a ``History`` answer's range, without reading its rows)."""

    @abstractmethod
    async def more_than(self, room: str, after: int, upto: int, limit: int) -> bool:
        """Whether more than ``limit`` messages of the room lie in ``(after, upto]`` (a
        resume's check against ``--resume-max``: one walk of at most ``limit`` index
        entries, nothing counted or read beyond them)."""

    @abstractmethod
    async def search(self, request: SearchRequest) -> list[Any]:
        """The message rows (every column of ``messages``, as attributes) a search finds."""


class CoreView(LogView):
    """The reads in SQLAlchemy Core, on one connection (``conn``, also for reads beyond the
    interface: the API's room list, ``broadcast --all``)."""

    def __init__(self, conn: AsyncConnection, index: SearchIndex) -> None:
        self.conn = conn
        self.index = index

    async def room_head(self, room: str) -> int:
        value = await self.conn.execute(
            select(func.max(messages.c.id)).where(messages.c.room == room)
        )
        return int(value.scalar() or 0)

    async def room_aliases(self, room: str) -> list[str]:
        return await room_aliases(self.conn, room)

    async def room_floor(self, room: str) -> int:
        value = await self.conn.execute(
            select(retention.c.purged_through).where(retention.c.room == room)
        )
        return int(value.scalar() or 0)

    async def after(
        self, room: str, after: int, upto: int, limit: int, *, chat_only: bool = False
    ) -> list[StoredMessage]:
        query = select(*MESSAGE_COLUMNS).where(
            messages.c.room == room, messages.c.id > after, messages.c.id <= upto
        )
        if chat_only:
            query = query.where(messages.c.kind == "chat")
        rows = await self.conn.execute(query.order_by(messages.c.id).limit(limit))
        return stored(rows)

    async def before(self, room: str, before: int | None, limit: int) -> list[StoredMessage]:
        query = select(*MESSAGE_COLUMNS).where(messages.c.room == room, messages.c.kind == "chat")
        if before is not None:
            query = query.where(messages.c.id < before)
        rows = await self.conn.execute(query.order_by(messages.c.id.desc()).limit(limit))
        return stored(reversed(rows.all()))

    async def ids_before(self, room: str, before: int | None, limit: int) -> list[int]:
        query = select(messages.c.id).where(messages.c.room == room, messages.c.kind == "chat")
        if before is not None:
            query = query.where(messages.c.id < before)
        rows = await self.conn.execute(query.order_by(messages.c.id.desc()).limit(limit))
        return list(rows.scalars())

    async def more_than(self, room: str, after: int, upto: int, limit: int) -> bool:
        query = (
            select(messages.c.id)
            .where(messages.c.room == room, messages.c.id > after, messages.c.id <= upto)
            .order_by(messages.c.id)
            .offset(limit)
            .limit(1)
        )
        return (await self.conn.execute(query)).first() is not None

    async def search(self, request: SearchRequest) -> list[Any]:
        return await self.index.find(self.conn, request)
