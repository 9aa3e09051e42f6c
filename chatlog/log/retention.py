"""Retention: delete old messages in small batches, remembering per room how far it cut.

Each batch is its own short write transaction, so live appends interleave with a long purge
instead of waiting behind it. IDs are never reused (AUTOINCREMENT), and ``retention``
records per room the newest ID removed, which is how resume and replay can tell a client that
history before it is gone.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatlog.log.schema import errors, messages, retention
from chatlog.log.store import utcnow
from chatlog.settings import sqlite_path

log = logging.getLogger(__name__)

BATCH = 1000

#: Runs one write transaction (the server's writer, or a plain engine for the CLI).
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


async def room_floor(conn: AsyncConnection, room: str) -> int:
    """The newest ID retention removed from ``room`` (0: nothing was ever removed)."""
    value = await conn.execute(select(retention.c.purged_through).where(retention.c.room == room))
    return int(value.scalar() or 0)


async def _delete_batch(
    conn: AsyncConnection, *, where: ColumnElement[bool]
) -> list[tuple[str, int, int]]:
    """Delete up to BATCH matching messages; return (room, newest removed id, count) per room."""
    victims = select(messages.c.id).where(where).order_by(messages.c.id).limit(BATCH)
    rows = (
        await conn.execute(
            select(messages.c.room, func.max(messages.c.id), func.count())
            .where(messages.c.id.in_(victims))
            .group_by(messages.c.room)
        )
    ).all()
    if rows:
        await conn.execute(delete(messages).where(messages.c.id.in_(victims)))
    for room, newest, _count in rows:
        await _raise_floor(conn, room, int(newest))
    return [(room, int(newest), int(count)) for room, newest, count in rows]


async def _raise_floor(conn: AsyncConnection, room: str, newest: int) -> None:
    values = {"room": room, "purged_through": newest, "purged_at": utcnow()}
    dialect = conn.dialect.name
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(retention).values(values)
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[retention.c.room],
            set_={
                "purged_through": func.max(retention.c.purged_through, newest)
                if dialect == "sqlite"
                else func.greatest(retention.c.purged_through, newest),
                "purged_at": values["purged_at"],
            },
        )
    )


async def purge(
    run_write: RunWrite,
    engine: AsyncEngine,
    policy: Policy,
    *,
    room: str | None = None,
    now: datetime | None = None,
) -> PurgeReport:
    """Apply ``policy`` (optionally to one room) in batches; return what was removed."""
    report = PurgeReport()
    now = now or utcnow()
    conditions: list[ColumnElement[bool]] = []
    if policy.days is not None:
        cutoff = now - timedelta(days=policy.days)
        cond = messages.c.sent_at < cutoff
        conditions.append(cond if room is None else cond & (messages.c.room == room))
        report.errors += await _purge_errors(run_write, cutoff)
    if policy.messages is not None:
        conditions.extend(await _count_cuts(engine, policy.messages, room))
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


async def _count_cuts(engine: AsyncEngine, keep: int, room: str | None) -> list[Any]:
    """Per room, the condition selecting all but its newest ``keep`` messages."""
    async with engine.connect() as conn:
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


def engine_writes(engine: AsyncEngine) -> RunWrite:
    """A ``RunWrite`` for the CLI: each call is its own ``BEGIN IMMEDIATE`` transaction."""

    async def run(op: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
        async with engine.connect() as conn:
            conn = await conn.execution_options(immediate=True)
            async with conn.begin():
                return await op(conn)

    return run


async def vacuum(url: str) -> None:
    """Give the space of deleted rows back to the file system."""
    path = sqlite_path(url)
    if path is not None:

        def run() -> None:
            with sqlite3.connect(path, timeout=30, isolation_level=None) as conn:
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        await asyncio.to_thread(run)
        return
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await conn.execute("VACUUM ANALYZE messages")
        await conn.execute("VACUUM ANALYZE errors")
    finally:
        await conn.close()


async def run_periodically(
    run_write: RunWrite, engine: AsyncEngine, policy: Policy, every: float
) -> None:
    """The server's retention loop: purge now, then every ``every`` seconds."""
    while True:
        try:
            report = await purge(run_write, engine, policy)
            if report.messages or report.errors:
                log.info(
                    "retention removed %d messages and %d errors", report.messages, report.errors
                )
        except Exception as exc:  # a failed purge must not stop the server; retry later
            log.error("retention purge failed: %s", exc)
        await asyncio.sleep(every)
