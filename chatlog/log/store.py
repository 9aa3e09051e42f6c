"""Reads and writes of the log. Every write goes through one :class:`Writer` task.

The writer group-commits: it takes everything that queued up since its last commit into one
``BEGIN IMMEDIATE`` transaction, and only after ``COMMIT`` returns does it hand the stored rows,
in ID order, to the fan-out callback. So nothing reaches a socket before it is durable, and
throughput does not collapse to one fsync per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import delete, func, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatlog.log.schema import errors, messages, meta, users, websocket_connections
from chatlog.log.sqlite import checkpoint
from chatlog.log.sqlite import commit as fastcommit

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds the writer waits before trying an unreachable database again.
RECONNECT_DELAY = 0.5


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


Op = Callable[[AsyncConnection], Awaitable[Any]]
OnCommit = Callable[[list[StoredMessage]], None]
OnFailure = Callable[[list[NewMessage], BaseException], None]
#: Called after each group commit with its row count and duration in seconds (metrics).
OnStats = Callable[[int, float], None]
_Item = NewMessage | tuple[Op, "asyncio.Future[Any]"]


class WriterClosed(RuntimeError):
    """The writer has stopped (the server is shutting down)."""


class Writer:
    """The single writer: group-commits messages and serialises every other write."""

    def __init__(
        self,
        engine: AsyncEngine,
        on_commit: OnCommit,
        on_failure: OnFailure,
        *,
        batch_max: int = 1000,
        on_stats: OnStats | None = None,
        before_append: Op | None = None,
    ) -> None:
        self._engine = engine
        self._on_stats = on_stats
        #: Runs first in every append transaction (PostgreSQL: the lock that orders appends;
        #: SQLite's one-hop fast path has no such hook and needs none: one writer per file).
        self._before_append = before_append
        self._on_commit = on_commit
        self._on_failure = on_failure
        self._batch_max = batch_max
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=batch_max * 8)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: The one-hop SQLite commit on the current connection (None: the SQLAlchemy path).
        self._fast: fastcommit.SqliteCommitter | None = None
        #: SQLite file: WAL checkpoints in the background, not inside a commit (checkpoint.py).
        self._checkpoints: checkpoint.Checkpointer | None = None
        #: Sizes and durations of recent commits, for metrics.
        self.commits = 0
        self.rows = 0

    @property
    def checkpoints(self) -> checkpoint.Checkpointer | None:
        """The background WAL checkpoints of a SQLite file (for metrics); else ``None``."""
        return self._checkpoints

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chatlog-writer")

    async def close(self, grace: float = 30.0) -> None:
        """Commit everything already queued, then stop.

        If the database stays unreachable for ``grace`` seconds the writer is stopped anyway,
        so a server whose database is gone can still shut down; what was not committed is
        logged (and was never shown to anyone).
        """
        if self._task is None or self._closed:
            return
        self._closed = True
        await self._queue.put(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._task.cancel()
            lost = sum(isinstance(item, NewMessage) for item in self._drain_queue())
            log.error("database unreachable at shutdown: %d queued messages not stored", lost)
        if self._checkpoints is not None:
            await self._checkpoints.close()

    def _drain_queue(self) -> list[_Item]:
        items: list[_Item] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                items.append(item)
        return items

    async def append(self, message: NewMessage) -> None:
        """Queue a message for the next commit (waits when the writer is far behind)."""
        if self._closed:
            raise WriterClosed("the server is shutting down")
        await self._queue.put(message)

    async def execute(self, op: Op) -> Any:
        """Run ``op`` in its own transaction on the writer, in queue order; return its result."""
        return await (await self.submit(op))

    async def submit(self, op: Op) -> asyncio.Future[Any]:
        """Queue ``op`` behind everything already queued; the future resolves once committed."""
        if self._closed:
            raise WriterClosed("the server is shutting down")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((op, future))
        return future

    async def _run(self) -> None:
        stopping = False
        while not (stopping and self._queue.empty()):
            try:
                async with self._engine.connect() as conn:
                    conn = await conn.execution_options(immediate=True)
                    self._fast = await fastcommit.committer(conn)
                    path = checkpoint.take_over(self._fast.db) if self._fast else None
                    if path is not None and self._checkpoints is None:
                        self._checkpoints = checkpoint.Checkpointer(path)
                    while not (stopping and self._queue.empty()):
                        batch, stopping = await self._next_batch(stopping)
                        if batch and not await self._process(conn, batch):
                            break  # after a failed transaction, start on a fresh connection
            except Exception as exc:  # the database is unreachable: wait, keep the queue
                log.error("writer cannot reach the database: %s", exc)
                await asyncio.sleep(RECONNECT_DELAY)

    async def _next_batch(self, stopping: bool) -> tuple[list[_Item], bool]:
        """Everything queued since the last commit (at most batch_max), and whether to stop."""
        batch: list[_Item] = []
        item = await self._queue.get() if not stopping else self._queue.get_nowait()
        while True:
            if item is None:
                stopping = True
            else:
                batch.append(item)
            if len(batch) >= self._batch_max or self._queue.empty():
                return batch, stopping
            item = self._queue.get_nowait()

    async def _process(self, conn: AsyncConnection, batch: list[_Item]) -> bool:
        """Commit a batch in queue order: each run of messages, and each run of ops, is one
        transaction (ops each in a savepoint, so one failing op does not undo the others)."""
        ok = True
        messages_run: list[NewMessage] = []
        ops_run: list[tuple[Op, asyncio.Future[Any]]] = []
        for item in batch:
            if isinstance(item, NewMessage):
                if ops_run:
                    ok = await self._run_ops(conn, ops_run) and ok
                    ops_run = []
                messages_run.append(item)
            else:
                if messages_run:
                    ok = await self._commit_messages(conn, messages_run) and ok
                    messages_run = []
                ops_run.append(item)
        if ops_run:
            ok = await self._run_ops(conn, ops_run) and ok
        if messages_run:
            ok = await self._commit_messages(conn, messages_run) and ok
        if self._checkpoints is not None and self._checkpoints.committed() and self._fast:
            try:
                await self._fast.checkpoint()
            except Exception as exc:  # disk full, read-only: the WAL keeps the data
                log.warning("WAL checkpoint failed: %s", exc)
        return ok

    async def _commit_messages(self, conn: AsyncConnection, batch: list[NewMessage]) -> bool:
        started, sent_at = time.perf_counter(), utcnow()
        try:
            # SQLite without nonces: one round trip to the database thread, or none (fastcommit.py).
            stored = None if self._fast is None else await self._fast.commit(batch, sent_at)
            if stored is None:
                async with conn.begin():
                    if self._before_append is not None:
                        await self._before_append(conn)
                    stored = await insert_messages(conn, batch, sent_at)
        except Exception as exc:
            log.error("commit of %d messages failed: %s", len(batch), exc)
            self._on_failure(batch, exc)
            return False
        self.commits += 1
        self.rows += len(batch)
        if self._on_stats is not None:
            self._on_stats(len(batch), time.perf_counter() - started)
        self._on_commit(stored)
        return True

    @staticmethod
    async def _run_ops(conn: AsyncConnection, ops: list[tuple[Op, asyncio.Future[Any]]]) -> bool:
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            async with conn.begin():
                for op, future in ops:
                    try:
                        async with conn.begin_nested():
                            outcomes.append((future, True, await op(conn)))
                    except Exception as exc:
                        outcomes.append((future, False, exc))
        except Exception as exc:  # the commit itself failed: nothing of the run is stored
            for _op, future in ops:
                if not future.done():
                    future.set_exception(exc)
            return False
        for future, succeeded, value in outcomes:
            if future.done():
                continue
            if succeeded:
                future.set_result(value)
            else:
                future.set_exception(value)
        return True


async def insert_messages(
    conn: AsyncConnection, batch: Sequence[NewMessage], sent_at: datetime
) -> list[StoredMessage]:
    """Insert a batch in one statement; a nonce already stored in the room is answered with
    its original row instead of a new one. Returns the rows in batch order."""
    existing: dict[tuple[str, str], StoredMessage] = {}
    keyed = {(m.room, m.nonce) for m in batch if m.nonce is not None}
    if keyed:
        rows = await conn.execute(
            select(
                messages.c.id,
                messages.c.room,
                messages.c.ws_id,
                messages.c.author,
                messages.c.raw,
                messages.c.sent_at,
                messages.c.nonce,
            ).where(tuple_(messages.c.room, messages.c.nonce).in_(list(keyed)))
        )
        for row in rows:
            existing[(row.room, row.nonce)] = StoredMessage(
                row.id, row.room, row.ws_id, row.author, stored_fields(row.raw), row.sent_at, True
            )
    fresh: list[NewMessage] = []
    # For each message of the batch: its index in ``fresh``, or the stored original it repeats.
    plan: list[int | StoredMessage] = []
    first: dict[tuple[str, str], int] = {}
    for m in batch:
        key = (m.room, m.nonce) if m.nonce is not None else None
        if key is not None and key in existing:
            plan.append(existing[key])
        elif key is not None and key in first:
            plan.append(first[key])
        else:
            if key is not None:
                first[key] = len(fresh)
            plan.append(len(fresh))
            fresh.append(m)
    ids: list[int] = []
    if fresh and conn.dialect.name == "sqlite":
        ids = await _insert_sqlite(conn, fresh, sent_at)
    elif fresh:
        values = [
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
            for m in fresh
        ]
        result = await conn.execute(
            insert(messages).returning(messages.c.id, sort_by_parameter_order=True), values
        )
        ids = list(result.scalars())
    stored: list[StoredMessage] = []
    used: set[int] = set()
    for m, step in zip(batch, plan, strict=True):
        if isinstance(step, StoredMessage):
            stored.append(_as_duplicate(step, m))
        elif step in used:
            original = fresh[step]
            stored.append(
                StoredMessage(
                    ids[step], m.room, m.ws_id, original.author, original.fields, sent_at, True
                )
            )
        else:
            used.add(step)
            stored.append(StoredMessage(ids[step], m.room, m.ws_id, m.author, m.fields, sent_at))
    return stored


async def _insert_sqlite(
    conn: AsyncConnection, batch: Sequence[NewMessage], sent_at: datetime
) -> list[int]:
    """One ``executemany`` of plain tuples and one read of the new IDs, instead of RETURNING.

    Profiled under load, SQLAlchemy's ordered RETURNING on SQLite inserts one row per
    statement, a round trip to aiosqlite's thread each (about 100 µs per row), and its bind
    processing costs about 15 µs per row more. The statement, parameters and ID read are the
    ones of the one-hop path (:mod:`chatlog.log.sqlite.commit`).
    """
    await conn.exec_driver_sql(fastcommit.SQLITE_INSERT, fastcommit.sqlite_rows(batch, sent_at))
    result = await conn.exec_driver_sql(fastcommit.NEWEST_IDS, (len(batch),))
    return sorted(result.scalars())


def _as_duplicate(original: StoredMessage, retry: NewMessage) -> StoredMessage:
    return StoredMessage(
        original.id,
        original.room,
        retry.ws_id,
        original.author,
        original.fields,
        original.sent_at,
        True,
    )


def stored_fields(raw: str) -> dict[str, Any]:
    """The client's object of a stored ``raw`` frame (for building its Chat frame again)."""
    # Stored frames passed the strict parser on the way in, so the fast parser reads them
    # back to the same object (no duplicate keys, NaN or oversized numbers can be there).
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else {}


# --- presence and errors: small writes run through Writer.execute ----------------------------


async def room_aliases(conn: AsyncConnection, room: str) -> list[str]:
    """The room's online users in join order (the order their connections opened)."""
    rows = await conn.execute(
        select(users.c.alias)
        .join(websocket_connections, websocket_connections.c.ws_id == users.c.ws_id)
        .where(users.c.room == room)
        .order_by(websocket_connections.c.opened_at, websocket_connections.c.ws_id)
    )
    return list(rows.scalars())


def open_connection(ws_id: str, room: str, node: str, remote: str | None) -> Op:
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
    async def op(conn: AsyncConnection) -> None:
        await conn.execute(
            insert(errors).values(
                occurred_at=utcnow(), ws_id=ws_id, kind=kind, detail=detail[:2000]
            )
        )

    return op


async def sweep_connections(engine: AsyncEngine, *, node: str | None = None) -> int:
    """Delete connection rows (and their aliases) left by a server that died.

    With ``node`` given only that node's rows go; with ``None`` every row goes, which is right
    for SQLite, where one server owns the file.
    """
    async with engine.connect() as conn:
        conn = await conn.execution_options(immediate=True)
        async with conn.begin():
            stale = select(websocket_connections.c.ws_id)
            if node is not None:
                stale = stale.where(websocket_connections.c.node == node)
            await conn.execute(delete(users).where(users.c.ws_id.in_(stale)))
            result = await conn.execute(
                delete(websocket_connections).where(websocket_connections.c.ws_id.in_(stale))
            )
            return int(result.rowcount or 0)


async def read_epoch(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        return str((await conn.execute(select(meta.c.epoch))).scalar_one())


async def room_head(conn: AsyncConnection, room: str) -> int:
    """The room's last message ID, 0 when it has none."""
    value = await conn.execute(select(func.max(messages.c.id)).where(messages.c.room == room))
    return int(value.scalar() or 0)


# --- reads for resume and history ------------------------------------------------------------

_FRAME_COLUMNS = (
    messages.c.id,
    messages.c.room,
    messages.c.author,
    messages.c.raw,
    messages.c.sent_at,
)


def row_frame(row: Any) -> dict[str, Any]:
    """The Chat frame the server sent for a stored row (same bytes as at fan-out time)."""
    from chatlog.protocol import chat_frame

    return chat_frame(
        stored_fields(row.raw), author=row.author, msg_id=row.id, room=row.room, sent_at=row.sent_at
    )


async def read_after(
    conn: AsyncConnection, room: str, after: int, upto: int, limit: int
) -> list[dict[str, Any]]:
    """Chat frames of the room with ``after < id <= upto``, oldest first, at most ``limit``."""
    rows = await conn.execute(
        select(*_FRAME_COLUMNS)
        .where(messages.c.room == room, messages.c.id > after, messages.c.id <= upto)
        .order_by(messages.c.id)
        .limit(limit)
    )
    return [row_frame(row) for row in rows]


async def read_before(
    conn: AsyncConnection, room: str, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` Chat frames of the room older than ``before``, oldest first."""
    query = select(*_FRAME_COLUMNS).where(messages.c.room == room)
    if before is not None:
        query = query.where(messages.c.id < before)
    rows = await conn.execute(query.order_by(messages.c.id.desc()).limit(limit))
    return [row_frame(row) for row in reversed(rows.all())]


async def count_after(conn: AsyncConnection, room: str, after: int, upto: int, cap: int) -> int:
    """How many messages of the room lie in ``(after, upto]``, counting no further than ``cap``."""
    inner = (
        select(messages.c.id)
        .where(messages.c.room == room, messages.c.id > after, messages.c.id <= upto)
        .limit(cap)
        .subquery()
    )
    return int((await conn.execute(select(func.count()).select_from(inner))).scalar_one())
