"""The log's values: a message waiting for its commit, a stored one, a live connection.

Plain data and pure helpers only, shared by both backends: how a batch with idempotency keys
(``Nonce``) splits into rows to insert and retries to answer with their originals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.protocol import chat_frame, delete_frame, edit_frame

#: A write the writer runs in its own savepoint, in queue order (presence, errors, retention).
Op = Callable[["AsyncConnection"], Awaitable[Any]]


def utcnow() -> datetime:
    """Naive UTC with microseconds: how every timestamp is stored."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(slots=True)
class NewMessage:
    """A chat message waiting for its commit."""

    room: str
    ws_id: str
    author: str
    body: str
    text: str
    raw: str
    fields: dict[str, Any]
    nonce: str | None = None


@dataclass(slots=True)
class StoredMessage:
    """A committed message; ``duplicate`` marks a retried nonce answered with the original."""

    id: int
    room: str
    ws_id: str
    author: str
    fields: dict[str, Any]
    sent_at: datetime
    duplicate: bool = False
    #: ``chat``, or an event about the chat row ``target``: ``edit`` or ``delete``.
    kind: str = "chat"
    target: int | None = None
    #: A chat row's current state: last edited, deleted (a tombstone).
    edited_at: datetime | None = None
    deleted_at: datetime | None = None

    def frame(self) -> dict[str, Any]:
        """The frame of this row: live, in a resume's backlog, in ``History``, and in
        ``replay --format wire``. A chat row is a Chat frame in its current state (built by
        :func:`chatlog.protocol.chat_frame`); an event is an Edit or Delete frame."""
        if self.kind == "edit":
            return edit_frame(self.fields, **self._event())
        if self.kind == "delete":
            return delete_frame(self.fields, **self._event())
        return chat_frame(
            self.fields,
            author=self.author,
            msg_id=self.id,
            room=self.room,
            sent_at=self.sent_at,
            edited_at=self.edited_at,
            deleted_at=self.deleted_at,
        )

    def _event(self) -> dict[str, Any]:
        return {
            "msg_id": self.id,
            "target": self.target or 0,
            "author": self.author,
            "room": self.room,
            "sent_at": self.sent_at,
        }


@dataclass(frozen=True, slots=True)
class LiveConnection:
    """A socket this process holds, as the presence tables record it."""

    ws_id: str
    room: str
    remote: str | None
    alias: str | None


def stored_fields(raw: str) -> dict[str, Any]:
    """The client's object of a stored ``raw`` frame (for building its Chat frame again)."""
    # Stored frames passed the strict parser on the way in, so the fast parser reads them
    # back to the same object (no duplicate keys, NaN or oversized numbers can be there).
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else {}


#: What a backend's nonce look-up returns: the stored original of each (room, nonce) found.
Originals = dict[tuple[str, str], StoredMessage]


def nonce_keys(batch: Sequence[NewMessage]) -> set[tuple[str, str]]:
    """The (room, nonce) pairs of a batch, to look up before inserting it."""
    return {(m.room, m.nonce) for m in batch if m.nonce is not None}


@dataclass(frozen=True, slots=True)
class Plan:
    """How a batch is stored: ``fresh`` are inserted, in order; ``steps[i]`` says what the
    batch's i-th message became: an index into ``fresh``, or the stored original it repeats."""

    fresh: list[NewMessage]
    steps: list[int | StoredMessage]


def plan_batch(batch: Sequence[NewMessage], originals: Originals) -> Plan:
    """Split ``batch``: a nonce stored before, or earlier in the same batch, is not inserted."""
    fresh: list[NewMessage] = []
    steps: list[int | StoredMessage] = []
    first: dict[tuple[str, str], int] = {}
    for m in batch:
        key = (m.room, m.nonce) if m.nonce is not None else None
        if key is not None and key in originals:
            steps.append(originals[key])
        elif key is not None and key in first:
            steps.append(first[key])
        else:
            if key is not None:
                first[key] = len(fresh)
            steps.append(len(fresh))
            fresh.append(m)
    return Plan(fresh, steps)


def stored_batch(
    batch: Sequence[NewMessage], plan: Plan, ids: Sequence[int], sent_at: datetime
) -> list[StoredMessage]:
    """The stored rows of ``batch`` in batch order, once ``plan.fresh`` got ``ids``.

    A retry is answered with its original's ID, author, fields and time, marked ``duplicate``
    and addressed to the retrying connection.
    """
    stored: list[StoredMessage] = []
    used: set[int] = set()
    for m, step in zip(batch, plan.steps, strict=True):
        if isinstance(step, StoredMessage):
            # As the original is now: edited or deleted since, the retrier sees that too.
            stored.append(replace(step, ws_id=m.ws_id, duplicate=True))
        elif step in used:
            original = plan.fresh[step]
            stored.append(
                StoredMessage(
                    ids[step], m.room, m.ws_id, original.author, original.fields, sent_at, True
                )
            )
        else:
            used.add(step)
            stored.append(StoredMessage(ids[step], m.room, m.ws_id, m.author, m.fields, sent_at))
    return stored
