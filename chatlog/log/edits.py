"""Edits and deletions, appended to the log as events; erasure of a message's text.

An edit or a deletion is itself a row of ``messages`` with a new ID (``kind`` ``edit`` or
``delete``, ``target_id`` the chat row it is about), so resume and replay deliver it in
order with everything else. The chat row shows the current state for SQL: its current text,
``edited_at``, ``deleted_at``. An edit first copies the row's previous version into
``message_revisions``. A deletion erases the text everywhere it is kept: the row's
``message``, ``text`` and ``raw``, the text of its edit events and its revisions; the row
stays as a tombstone so IDs never move.

Every change of a row's text goes through :func:`write_text`, and every event row is
inserted by :func:`_insert_event`: the one place to keep anything derived from the text
(a search index) exact. The bytes themselves are scrubbed from the files by the backend
(:meth:`chatlog.log.backend.LogBackend.scrub`) once the transaction has committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log.model import StoredMessage, stored_fields, utcnow
from chatlog.log.schema import message_revisions, messages
from chatlog.log.search import SearchIndex

#: What a tombstone's ``raw`` holds: no client keys at all.
TOMBSTONE_RAW = "{}"


class Upkeep(Protocol):
    """What an edit needs of its backend (a :class:`~chatlog.log.backend.LogBackend` is one)."""

    @property
    def search_index(self) -> SearchIndex:
        """The full-text index, kept exact by :func:`write_text`."""

    async def lock_appends(self, conn: AsyncConnection) -> None:
        """Run before an event is inserted, in the same transaction (PostgreSQL: the lock)."""


class ChangeRefused(Exception):
    """An edit or deletion was refused; ``code`` is the Error frame's ``Code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Editor:
    """Who asks: a connection (``ws_id``, and the token's ``user`` when auth is on) in its
    ``room``, or a moderator (``None`` for both: ``chatlog redact`` and ``erase``)."""

    room: str | None
    ws_id: str
    author: str
    user: str | None = None
    moderator: bool = False
    #: Seconds after sending within which a message may still be changed (None: any time).
    window: float | None = None


@dataclass(slots=True)
class Appended:
    """What an event write stored: the event rows, in ID order, to deliver once committed,
    and whether text was erased (the files must then be scrubbed)."""

    rows: list[StoredMessage] = field(default_factory=list)
    erased: bool = False


async def _target(conn: AsyncConnection, target: int, editor: Editor) -> Any:
    row = (
        await conn.execute(
            select(
                messages.c.id,
                messages.c.room,
                messages.c.ws_id,
                messages.c.author,
                messages.c.message,
                messages.c.text,
                messages.c.raw,
                messages.c.sent_at,
            ).where(
                messages.c.id == target,
                messages.c.kind == "chat",
                messages.c.deleted_at.is_(None),
            )
        )
    ).first()
    if row is None or (editor.room is not None and row.room != editor.room):
        raise ChangeRefused("not-found", f"there is no message {target} in this room")
    if editor.moderator:
        return row
    own = row.author == editor.user if editor.user is not None else row.ws_id == editor.ws_id
    if not own:
        raise ChangeRefused("not-allowed", "only its author may change a message")
    if editor.window is not None and utcnow() - row.sent_at > timedelta(seconds=editor.window):
        raise ChangeRefused(
            "not-allowed", f"messages can be changed for {editor.window:g} seconds only"
        )
    return row


async def _insert_event(
    conn: AsyncConnection,
    *,
    kind: str,
    target: Any,
    editor: Editor,
    message: str,
    text: str,
    raw: str,
    now: datetime,
) -> StoredMessage:
    """Append one event row about ``target``; the stored row, for delivery."""
    result = await conn.execute(
        insert(messages).returning(messages.c.id),
        {
            "room": target.room,
            "ws_id": editor.ws_id,
            "author": editor.author,
            "message": message,
            "text": text,
            "raw": raw,
            "sent_at": now,
            "kind": kind,
            "target_id": target.id,
        },
    )
    return StoredMessage(
        int(result.scalar_one()),
        target.room,
        editor.ws_id,
        editor.author,
        stored_fields(raw),
        now,
        kind=kind,
        target=target.id,
    )


async def write_text(
    conn: AsyncConnection,
    ids: Sequence[int],
    *,
    index: SearchIndex,
    message: str,
    text: str,
    raw: str | None,
    **state: Any,
) -> None:
    """Set the text of the rows ``ids``: the one place a stored text changes or is erased.

    ``raw`` ``None`` marks erased edit events: each keeps only ``{"Edit": {"ID": target}}``.
    ``state`` sets ``edited_at`` or ``deleted_at``.
    """
    if not ids:
        return
    # The index follows the text: an erased text leaves it, an edited one is found as it is now
    # (event rows were never in it, so unindexing them changes nothing).
    await index.unindex(conn, ids)
    if text:
        await index.index_rows(conn, [(msg_id, text) for msg_id in ids])
    values: dict[str, Any] = {"message": message, "text": text, **state}
    if raw is not None:
        await conn.execute(
            update(messages).where(messages.c.id.in_(ids)).values({**values, "raw": raw})
        )
        return
    rows = await conn.execute(
        select(messages.c.id, messages.c.target_id).where(messages.c.id.in_(ids))
    )
    for row in rows.all():
        stub = orjson.dumps({"Edit": {"ID": row.target_id}}).decode()
        await conn.execute(
            update(messages).where(messages.c.id == row.id).values({**values, "raw": stub})
        )


async def _append_event(
    conn: AsyncConnection,
    target_id: int,
    editor: Editor,
    log: Upkeep,
    *,
    kind: str,
    message: str,
    text: str,
    raw: str,
) -> tuple[Any, StoredMessage, datetime]:
    """Check that ``editor`` may change ``target_id``, then append the event (under the
    append lock): the target row, the event and its time."""
    target = await _target(conn, target_id, editor)
    await log.lock_appends(conn)
    now = utcnow()
    event = await _insert_event(
        conn, kind=kind, target=target, editor=editor, message=message, text=text, raw=raw, now=now
    )
    return target, event, now


async def edit(
    conn: AsyncConnection,
    target_id: int,
    editor: Editor,
    *,
    body: str,
    text: str,
    raw: str,
    log: Upkeep,
) -> Appended:
    """Replace the text of message ``target_id`` (the previous version goes to revisions)."""
    target, event, now = await _append_event(
        conn, target_id, editor, log, kind="edit", message=body, text=text, raw=raw
    )
    await conn.execute(
        insert(message_revisions),
        {
            "message_id": target.id,
            "edit_id": event.id,
            "message": target.message,
            "text": target.text,
            "raw": target.raw,
            "replaced_at": now,
        },
    )
    fields = stored_fields(target.raw)
    fields["Message"] = body
    await write_text(
        conn,
        [target.id],
        index=log.search_index,
        message=body,
        text=text,
        raw=orjson.dumps(fields).decode(),
        edited_at=now,
    )
    return Appended([event])


async def remove(
    conn: AsyncConnection,
    target_id: int,
    editor: Editor,
    *,
    raw: str,
    log: Upkeep,
) -> Appended:
    """Delete message ``target_id``: append the event, erase its text, keep a tombstone."""
    target, event, now = await _append_event(
        conn, target_id, editor, log, kind="delete", message="", text="", raw=raw
    )
    await erase_rows(conn, [target.id], now, log.search_index)
    return Appended([event], erased=True)


async def erase_rows(
    conn: AsyncConnection, ids: Sequence[int], now: datetime, index: SearchIndex
) -> None:
    """Erase the text of the chat rows ``ids``, of their edit events and of their revisions."""
    await write_text(conn, ids, index=index, message="", text="", raw=TOMBSTONE_RAW, deleted_at=now)
    events = list(
        (
            await conn.execute(
                select(messages.c.id).where(
                    messages.c.target_id.in_(ids), messages.c.kind == "edit"
                )
            )
        ).scalars()
    )
    await write_text(conn, events, index=index, message="", text="", raw=None, deleted_at=now)
    await conn.execute(delete(message_revisions).where(message_revisions.c.message_id.in_(ids)))


def delete_raw(target: int, reason: str | None = None) -> str:
    """The stored frame of a deletion made outside a socket (``chatlog redact``, ``erase``)."""
    frame: dict[str, Any] = {"Delete": {"ID": target}}
    if reason:
        frame["Reason"] = reason
    return orjson.dumps(frame).decode()


async def authored(
    conn: AsyncConnection, author: str, room: str | None, *, after: int = 0, limit: int = 500
) -> list[int]:
    """IDs of ``author``'s chat rows not yet deleted (optionally in one room), oldest first."""
    query = select(messages.c.id).where(
        messages.c.author == author,
        messages.c.kind == "chat",
        messages.c.deleted_at.is_(None),
        messages.c.id > after,
    )
    if room is not None:
        query = query.where(messages.c.room == room)
    return list((await conn.execute(query.order_by(messages.c.id).limit(limit))).scalars())
