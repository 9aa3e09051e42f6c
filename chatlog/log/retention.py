"""Retention: delete old messages in small batches, remembering per room how far it cut.

Each batch is its own short write transaction, so live appends interleave with a long purge
instead of waiting behind it. IDs are never reused (AUTOINCREMENT), and ``retention``
records per room the newest ID removed, which is how resume and replay can tell a client that
history before it is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, DateTime, bindparam, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log.backend import LogBackend
from chatlog.log.model import utcnow
from chatlog.log.schema import errors, message_revisions, messages

log = logging.getLogger(__name__)

BATCH = 1000

#: Runs one write transaction (the server's writer, or the backend's own for the CLI).
RunWrite = Callable[[Callable[[AsyncConnection], Awaitable[Any]]], Awaitable[Any]]


@dataclass(frozen=True)
class Policy:
    """Keep messages newer than ``days`` and, per room, the newest ``messages``."""

    days: float | None = None
    messages: int | None = None

    @property
    def active(self) -> bool:
        return self.days is not None or self.messages is not None


@dataclass
class PurgeReport:
    messages: int = 0
    errors: int = 0
    #: Newest removed ID per room.
    floors: dict[str, int] = field(default_factory=dict)


async def _delete_batch(
    conn: AsyncConnection, *, where: ColumnElement[bool]
) -> list[tuple[str, int, int]]:
    """Delete up to BATCH matching messages; return (room, newest removed id, count) per room.

    A message goes with its edit and delete events and its revisions, however new those are.
    """
    victims = select(messages.c.id).where(where).order_by(messages.c.id).limit(BATCH)
    ids = list((await conn.execute(victims)).scalars())
    if not ids:
        return []
    rows = (
        await conn.execute(
            select(messages.c.room, func.max(messages.c.id), func.count())
            .where(messages.c.id.in_(ids))
            .group_by(messages.c.room)
        )
    ).all()
    await conn.execute(delete(message_revisions).where(message_revisions.c.message_id.in_(ids)))
    await conn.execute(delete(messages).where(messages.c.target_id.in_(ids)))
    await conn.execute(delete(messages).where(messages.c.id.in_(ids)))
    for room, newest, _count in rows:
        await _raise_floor(conn, room, int(newest))
    return [(room, int(newest), int(count)) for room, newest, count in rows]


_RAISE_FLOOR = text(
    "INSERT INTO retention (room, purged_through, purged_at) VALUES (:room, :newest, :at) "
    "ON CONFLICT (room) DO UPDATE SET purged_at = excluded.purged_at, purged_through = CASE "
    "WHEN retention.purged_through > excluded.purged_through THEN retention.purged_through "
    "ELSE excluded.purged_through END"
).bindparams(bindparam("at", type_=DateTime()))


async def _raise_floor(conn: AsyncConnection, room: str, newest: int) -> None:
    # The same upsert on SQLite and PostgreSQL; the floor only ever rises.
    await conn.execute(_RAISE_FLOOR, {"room": room, "newest": newest, "at": utcnow()})


async def purge(
    backend: LogBackend,
    policy: Policy,
    *,
    room: str | None = None,
    now: datetime | None = None,
    run_write: RunWrite | None = None,
) -> PurgeReport:
    """Apply ``policy`` (optionally to one room) in batches; return what was removed.

    Each batch runs through ``run_write``: the server's writer, or (default) a transaction of
    its own, for the CLI.
    """
    run_write = run_write or backend.write
    report = PurgeReport()
    now = now or utcnow()
    conditions: list[ColumnElement[bool]] = []
    if policy.days is not None:
        cutoff = now - timedelta(days=policy.days)
        cond = messages.c.sent_at < cutoff
        conditions.append(cond if room is None else cond & (messages.c.room == room))
        report.errors += await _purge_errors(run_write, cutoff)
    if policy.messages is not None:
        conditions.extend(await _count_cuts(backend, policy.messages, room))
    for where in conditions:
        while True:
            removed = await run_write(partial(_delete_batch, where=where))
            if not removed:
                break
            for name, newest, count in removed:
                report.floors[name] = max(report.floors.get(name, 0), newest)
                report.messages += count
            await asyncio.sleep(0)  # let live appends in between batches
    return report


async def _count_cuts(backend: LogBackend, keep: int, room: str | None) -> list[Any]:
    """Per room, the condition selecting all but its newest ``keep`` messages."""
    async with backend.engine.connect() as conn:
        rooms = (
            [room]
            if room is not None
            else list((await conn.execute(select(messages.c.room).distinct())).scalars())
        )
        cuts = []
        for name in rooms:
            threshold = (
                await conn.execute(
                    select(messages.c.id)
                    .where(messages.c.room == name)
                    .order_by(messages.c.id.desc())
                    .offset(keep)
                    .limit(1)
                )
            ).scalar()
            if threshold is not None:
                cuts.append((messages.c.room == name) & (messages.c.id <= threshold))
        return cuts


async def _purge_errors(run_write: RunWrite, cutoff: datetime) -> int:
    removed = 0
    while True:

        async def batch(conn: AsyncConnection) -> int:
            ids = select(errors.c.id).where(errors.c.occurred_at < cutoff).limit(BATCH)
            result = await conn.execute(delete(errors).where(errors.c.id.in_(ids)))
            return int(result.rowcount or 0)

        count: int = await run_write(batch)
        removed += count
        if count < BATCH:
            return removed


async def run_periodically(
    backend: LogBackend, run_write: RunWrite, policy: Policy, every: float
) -> None:
    """The server's retention loop: purge now, then every ``every`` seconds."""
    while True:
        try:
            report = await purge(backend, policy, run_write=run_write)
            if report.messages or report.errors:
                log.info(
                    "retention removed %d messages and %d errors", report.messages, report.errors
                )
        except Exception as exc:  # a failed purge must not stop the server; retry later
            log.error("retention purge failed: %s", exc)
        await asyncio.sleep(every)
