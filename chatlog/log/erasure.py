"""Moderation from outside a socket: ``chatlog redact`` one message, ``chatlog erase`` all of
an author's, as deletion events appended like any row (running servers deliver them).

Each deletion runs :func:`chatlog.log.edits.remove` as a moderator (no author check, no
edit window) in a transaction of the tool's own, taking the backend's append lock; once
committed, the backend scrubs the files (:meth:`~chatlog.log.backend.LogBackend.scrub`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log import edits
from chatlog.log.backend import LogBackend
from chatlog.log.schema import messages

#: The ``ws_id`` and author of events a tool appends.
TOOL_WS_ID = "cli"
MODERATOR = "system"
#: Messages erased per transaction (live appends interleave between them).
BATCH = 200

_MODERATOR = edits.Editor(room=None, ws_id=TOOL_WS_ID, author=MODERATOR, moderator=True)


@dataclass
class Erased:
    """What a redaction or an erasure changed."""

    #: (message ID, room, deletion event ID) per erased message, oldest first.
    messages: list[tuple[int, str, int]] = field(default_factory=list)
    #: Whether the files were scrubbed (SQLite: False when a reader held the WAL).
    scrubbed: bool = True


async def _delete(
    conn: AsyncConnection, backend: LogBackend, msg_id: int, reason: str | None
) -> tuple[int, str, int]:
    """Delete one message as the moderator: its (ID, room, deletion event ID)."""
    appended = await edits.remove(
        conn, msg_id, _MODERATOR, raw=edits.delete_raw(msg_id, reason), log=backend
    )
    event = appended.rows[0]
    return msg_id, event.room, event.id


async def redact(backend: LogBackend, msg_id: int, reason: str | None = None) -> Erased:
    """Delete message ``msg_id`` as a moderator; raises ``ChangeRefused`` (``not-found``)."""
    async with backend.transaction() as conn:
        deleted = await _delete(conn, backend, msg_id, reason)
    return Erased([deleted], await backend.scrub())


async def authored(backend: LogBackend, author: str, room: str | None) -> list[tuple[int, str]]:
    """The (ID, room) of every chat message of ``author`` not yet deleted, oldest first."""
    query = select(messages.c.id, messages.c.room).where(
        messages.c.author == author, messages.c.kind == "chat", messages.c.deleted_at.is_(None)
    )
    if room is not None:
        query = query.where(messages.c.room == room)
    async with backend.engine.connect() as conn:
        return [(r.id, r.room) for r in await conn.execute(query.order_by(messages.c.id))]


async def erase(
    backend: LogBackend, author: str, room: str | None = None, reason: str = "erased"
) -> Erased:
    """Delete every message of ``author`` (optionally in one ``room``), a batch at a time."""
    report = Erased()
    after = 0
    while True:
        async with backend.transaction() as conn:
            ids = await edits.authored(conn, author, room, after=after, limit=BATCH)
            for msg_id in ids:
                report.messages.append(await _delete(conn, backend, msg_id, reason))
        if len(ids) < BATCH:
            break
        after = ids[-1]
    if report.messages:
        report.scrubbed = await backend.scrub()
    return report
