"""The log on PostgreSQL: several server processes share one database.

Appends are serialised with a transaction-level advisory lock so commit order equals ID order,
and each rings the doorbell (:mod:`.doorbell`); every process reads new rows from the table in
ID order and delivers them. Presence is kept across processes with node heartbeats
(:mod:`.nodes`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, Final

import asyncpg
from sqlalchemy import insert, select, text, tuple_
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log import presence
from chatlog.log.backend import (
    Feed,
    Listener,
    LogBackend,
    LogView,
    Node,
    WriteSession,
    first_line,
)
from chatlog.log.model import (
    NewMessage,
    Originals,
    StoredMessage,
    nonce_keys,
    plan_batch,
    stored_batch,
)
from chatlog.log.postgres import engine as pg
from chatlog.log.postgres.doorbell import APPEND_PROLOGUE, PostgresFeed
from chatlog.log.postgres.reads import PostgresReads
from chatlog.log.postgres.search import PostgresSearch
from chatlog.log.queries import MESSAGE_COLUMNS, stored_message
from chatlog.log.readonly import ReadOnly
from chatlog.log.schema import messages
from chatlog.log.search import searchable

#: Advisory lock key held while migrating, so servers starting together take turns.
MIGRATE_LOCK = 0x63686D67  # "chmg"


#: PostgreSQL's SQLSTATEs, and what each means for the person who gave ``--db``.
_EXPLAINED: Final = {
    "28P01": "PostgreSQL at {where} refused the login ({detail}); check the user and password",
    "28000": "PostgreSQL at {where} refused the login ({detail}); check the user and password",
    "3D000": "{name} does not exist ({detail}); create it first, e.g. with createdb",
    "42P01": "{name} has no chatlog tables ({detail}); run `chatlog db upgrade` on it first",
    "57P03": "PostgreSQL at {where} is not taking connections ({detail}); try again shortly",
    "53300": "PostgreSQL at {where} is not taking connections ({detail}); try again shortly",
}


_READ_ONLY = text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


class PostgresBackend(LogBackend):
    """The log in one PostgreSQL database."""

    name = "postgresql"
    driver_errors = (asyncpg.PostgresError, asyncpg.InterfaceError)
    search_index = PostgresSearch()

    @classmethod
    def describe(cls, url: str) -> tuple[str, str | None]:
        parsed = make_url(url)
        where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        return f"PostgreSQL database {parsed.database!r} at {where}", where

    @classmethod
    def driver_error(cls, exc: BaseException) -> BaseException | None:
        # SQLAlchemy's asyncpg adapter re-raises the driver's errors as its own classes, with
        # the SQLSTATE kept as ``sqlstate``.
        orig = super().driver_error(exc)
        if orig is None and isinstance(exc, DBAPIError) and hasattr(exc.orig, "sqlstate"):
            return exc.orig
        return orig

    @classmethod
    def explain(cls, exc: BaseException, name: str, where: str | None) -> str | None:
        orig = cls.driver_error(exc)
        if orig is None:
            return None
        template = _EXPLAINED.get(str(getattr(orig, "sqlstate", "")))
        return (template or "{name} cannot be used ({detail})").format(
            name=name, where=where, detail=first_line(orig)
        )

    def __init__(self, url: str) -> None:
        super().__init__(url, pg.make_engine(url))
        #: The server's reads, on asyncpg directly (the pool opens at the first one).
        self.reads = PostgresReads(pg.asyncpg_dsn(url))

    async def dispose(self) -> None:
        await self.reads.close()
        await super().dispose()

    def view(self) -> AbstractAsyncContextManager[LogView]:
        return self.reads.view()

    async def _migration_lock(self, conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK})

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[WriteSession]:
        async with self.engine.connect() as conn:
            yield _PostgresSession(conn)

    def feed(self, listener: Listener, node: Node) -> Feed:
        return PostgresFeed(self.engine, listener, node)

    async def lock_appends(self, conn: AsyncConnection) -> None:
        await conn.execute(APPEND_PROLOGUE)

    async def sweep(self, node: str | None = None) -> int:
        return int(await self.write(lambda conn: presence.sweep_connections(conn, node)))

    @asynccontextmanager
    async def read_only(self, *, limit_s: float | None = None) -> AsyncIterator[ReadOnly]:
        async with self.engine.connect() as conn:
            trans = await conn.begin()
            try:
                # One snapshot for the whole transaction: replay reads the range and then the
                # head, and a row committed between two READ COMMITTED snapshots would be in
                # neither the range nor what --follow prints after the head.
                await conn.execute(
                    text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                )
                if limit_s is not None:
                    await conn.execute(text(f"SET LOCAL statement_timeout = {int(limit_s * 1000)}"))
                yield ReadOnly(conn)
            finally:
                await trans.rollback()

    async def vacuum(self) -> None:
        conn = await pg.connect(self.url)
        try:
            await conn.execute("VACUUM ANALYZE messages")
            await conn.execute("VACUUM ANALYZE message_revisions")
            await conn.execute("VACUUM ANALYZE errors")
        finally:
            await conn.close()

    async def has_messages_table(self) -> bool:
        async with self.read_only() as reader:
            return bool(
                await reader.scalar(
                    "SELECT count(*) FROM information_schema.tables WHERE table_name = 'messages'"
                )
            )

    async def highest_id_ever(self, conn: AsyncConnection) -> int | None:
        seq = await conn.scalar(
            text("SELECT pg_sequence_last_value(pg_get_serial_sequence('messages', 'id'))")
        )
        return None if seq is None else int(seq)

    async def insert_rows(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        await conn.execute(insert(messages), rows)
        await self.search_index.index_rows(conn, searchable(rows))

    async def ids_imported(self, conn: AsyncConnection, last: int) -> None:
        await conn.execute(
            text("SELECT setval(pg_get_serial_sequence('messages', 'id'), :last)"), {"last": last}
        )


class _PostgresSession(WriteSession):
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def append(self, batch: Sequence[NewMessage], sent_at: datetime) -> list[StoredMessage]:
        async with self.conn.begin():
            await self.conn.execute(APPEND_PROLOGUE)
            plan = plan_batch(batch, await _originals(self.conn, batch))
            ids: list[int] = []
            if plan.fresh:
                result = await self.conn.execute(
                    insert(messages).returning(messages.c.id, sort_by_parameter_order=True),
                    [
                        {
                            "room": m.room,
                            "ws_id": m.ws_id,
                            "author": m.author,
                            "message": m.body,
                            "text": m.text,
                            "raw": m.raw,
                            "sent_at": sent_at,
                            "nonce": m.nonce,
                        }
                        for m in plan.fresh
                    ],
                )
                ids = list(result.scalars())
                await PostgresBackend.search_index.index_rows(
                    self.conn, zip(ids, (m.text for m in plan.fresh), strict=True)
                )
        return stored_batch(batch, plan, ids, sent_at)


async def _originals(conn: AsyncConnection, batch: Sequence[NewMessage]) -> Originals:
    keys = nonce_keys(batch)
    if not keys:
        return {}
    rows = await conn.execute(
        select(*MESSAGE_COLUMNS, messages.c.nonce).where(
            tuple_(messages.c.room, messages.c.nonce).in_(list(keys))
        )
    )
    return {(r.room, r.nonce): stored_message(r) for r in rows}
