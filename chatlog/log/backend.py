"""The one interface to the log. The server, the history tools and the CLI use only this.

A :class:`LogBackend` (SQLite in :mod:`chatlog.log.sqlite`, PostgreSQL in
:mod:`chatlog.log.postgres`, chosen from the URL in :mod:`chatlog.log.open`) offers:

* writes: :meth:`~LogBackend.writing` opens the session through which the single
  :class:`~chatlog.log.writer.Writer` appends batches (nonce de-duplication included) and runs
  presence and error writes; :meth:`~LogBackend.transaction` is one write transaction for
  tools (purge, import);
* live delivery: :meth:`~LogBackend.feed` tells the server which rows were committed, its own
  and any other writer's (the doorbell), and keeps presence across processes;
* reads: :meth:`~LogBackend.view` for the server's resume, history and search reads (on
  the driver itself, see :mod:`chatlog.log.queries`), :meth:`~LogBackend.core_view` for the
  few reads beyond them, and :meth:`~LogBackend.read_only` for ``chatlog sql``, replay and
  export;
* upkeep: migrations, retention's floor upsert, vacuum, import, metrics.

Everything the two databases share is written once here, in SQLAlchemy Core; a backend
overrides only what its database does differently.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatlog.log import migrate
from chatlog.log.basics import LogUnavailable
from chatlog.log.model import LiveConnection, NewMessage, Op, StoredMessage
from chatlog.log.queries import CoreView, LogView
from chatlog.log.readonly import ReadOnly
from chatlog.log.schema import meta
from chatlog.log.search import SearchIndex


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type's name)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Listener(Protocol):
    """Where a :class:`Feed` delivers: the server's sockets, seen from the log."""

    def rooms(self) -> Collection[str]:
        """Rooms with at least one local socket (rows of other rooms need not be read)."""

    def deliver(self, stored: list[StoredMessage]) -> None:
        """Fan committed rows out, in ID order."""

    def presence(self, room: str, aliases: list[str]) -> None:
        """Another process changed the room's user list; this is the new one."""

    def connections(self) -> Iterable[LiveConnection]:
        """Every local socket (re-registered after this node was swept as dead)."""


@dataclass(frozen=True, slots=True)
class Node:
    """This server process, as other processes sharing the log see it."""

    node: str
    address: str | None = None
    heartbeat: float = 2.0
    timeout: float = 10.0


class Feed(ABC):
    """How committed rows and presence changes reach one server process's :class:`Listener`."""

    async def prepare(self) -> None:
        """Before the writer starts: clear what a crash left, note the log's head."""
        return None

    async def start(self) -> None:
        """After the writer started: begin delivering."""
        return None

    async def close(self) -> None:
        """Stop delivering (after the writer has drained)."""
        return None

    @abstractmethod
    def committed(self, stored: list[StoredMessage]) -> None:
        """The writer's callback right after a group commit, rows in ID order."""

    def presence_changed(self, room: str, aliases: list[str] | None = None) -> None:
        """This process changed the room's user list to ``aliases`` (already sent to its own
        sockets)."""
        return None


class WriteSession(ABC):
    """The writer's connection: appends, and ops on :attr:`conn`."""

    conn: AsyncConnection

    @abstractmethod
    async def append(self, batch: Sequence[NewMessage], sent_at: datetime) -> list[StoredMessage]:
        """Insert and commit ``batch`` as one transaction; a nonce already stored in its room
        is answered with the original row instead of a new one. Rows in batch order."""

    async def between_batches(self) -> None:
        """Housekeeping after a batch, while nothing is in flight (SQLite: WAL checkpoints)."""
        return None

    async def scrub(self) -> None:
        """After a commit that erased text: get the old bytes out of the files (SQLite: a
        truncating WAL checkpoint; see :meth:`LogBackend.scrub`)."""
        return None

    def holding_delivery(self) -> AbstractAsyncContextManager[object]:
        """Held around ops and their :meth:`scrub`: this process's feed reads no rows from the
        table meanwhile, so a ``Delete`` reaches a socket only once its text is scrubbed
        (SQLite; a no-op where nothing needs scrubbing)."""
        return contextlib.nullcontext()


@dataclass(frozen=True, slots=True)
class Gauge:
    """One backend-specific figure for ``/metrics``."""

    name: str
    help: str
    value: float
    counter: bool = False


class LogBackend(ABC):
    """One log database (see the module docstring)."""

    #: Shown to people: ``sqlite`` or ``postgresql``.
    name: ClassVar[str]
    #: Exceptions of the database driver: a failure that is the database's, not a bug.
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: The full-text index: the one way message text enters or leaves it (log/search.py).
    search_index: ClassVar[SearchIndex]

    @classmethod
    def describe(cls, url: str) -> tuple[str, str | None]:
        """How people know the database at ``url`` (see :func:`chatlog.log.open.describe`)."""
        return "the database", None

    @classmethod
    def driver_error(cls, exc: BaseException) -> BaseException | None:
        """The driver's error under ``exc`` (SQLAlchemy wraps them), if it is one."""
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        return orig if isinstance(orig, cls.driver_errors) else None

    @classmethod
    def explain(cls, exc: BaseException, name: str, where: str | None) -> str | None:
        """What the driver error under ``exc`` means, in one line, or ``None``."""
        orig = cls.driver_error(exc)
        return None if orig is None else f"{name} cannot be used ({first_line(orig)})"

    def __init__(self, url: str, engine: AsyncEngine) -> None:
        self.url = url
        self.engine = engine

    async def dispose(self) -> None:
        """Close every connection."""
        await self.engine.dispose()

    # --- schema ------------------------------------------------------------------------------

    async def migrate(self, revision: str = "head") -> None:
        """Migrate up to ``revision`` (head by default), creating the tables if needed."""
        async with self.engine.begin() as conn:
            await self._migration_lock(conn)
            await conn.run_sync(migrate.run, "upgrade", revision)

    async def downgrade(self, revision: str) -> None:
        """Migrate down to ``revision`` (``base`` drops every table)."""
        async with self.engine.begin() as conn:
            await self._migration_lock(conn)
            await conn.run_sync(migrate.run, "downgrade", revision)

    async def revision(self) -> str | None:
        """The revision the database is at, ``None`` when it has no chatlog tables."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(migrate.current)

    async def _migration_lock(self, conn: AsyncConnection) -> None:
        """Make processes migrating at once take turns (PostgreSQL)."""
        return None

    async def epoch(self) -> str:
        """The log's random epoch, made with the database (clients notice a replaced log)."""
        async with self.engine.connect() as conn:
            return str((await conn.execute(select(meta.c.epoch))).scalar_one())

    # --- writes ------------------------------------------------------------------------------

    @abstractmethod
    def writing(self) -> AbstractAsyncContextManager[WriteSession]:
        """``async with backend.writing() as session``: the single writer's connection."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction, committed at the end (tools: purge batches, import)."""
        async with self.engine.begin() as conn:
            yield conn

    async def write(self, op: Op) -> Any:
        """Run ``op`` in a transaction of its own; return its result."""
        async with self.transaction() as conn:
            return await op(conn)

    async def vacuum(self) -> None:
        """Give the space of deleted rows back to the file system."""
        return None

    async def lock_appends(self, conn: AsyncConnection) -> None:
        """In a transaction that appends rows outside the writer's batches (edits and
        deletions): keep IDs in commit order and tell the other processes (PostgreSQL)."""
        return None

    async def scrub(self) -> bool:
        """After a committed erasure by a tool: make sure the erased bytes are in no file.
        False when that could not be finished now (a reader held the WAL; logged)."""
        return True

    # --- live delivery -----------------------------------------------------------------------

    @abstractmethod
    def feed(self, listener: Listener, node: Node) -> Feed:
        """The feed of one server process."""

    @abstractmethod
    async def sweep(self, node: str | None = None) -> int:
        """Delete the connection rows (and aliases) a crashed server left; how many."""

    # --- reads -------------------------------------------------------------------------------

    def view(self) -> AbstractAsyncContextManager[LogView]:
        """A read of the server's (greeting, resume, history, search): ``async with
        backend.view() as view``. Backends answer it on their driver directly."""
        return self.core_view()

    @asynccontextmanager
    async def core_view(self) -> AsyncIterator[CoreView]:
        """The same reads in SQLAlchemy Core, with the connection (``view.conn``) for reads
        beyond :class:`LogView` (the API's room list, ``broadcast --all``)."""
        async with self.engine.connect() as conn:
            yield CoreView(conn, self.search_index)

    @abstractmethod
    def read_only(self, *, limit_s: float | None = None) -> AbstractAsyncContextManager[ReadOnly]:
        """``async with backend.read_only() as reader``: a :class:`ReadOnly` transaction that
        no statement can write through, always rolled back."""

    # --- import ------------------------------------------------------------------------------

    @abstractmethod
    async def has_messages_table(self) -> bool:
        """Whether the database holds chatlog's ``messages`` table (read-only check)."""

    @abstractmethod
    async def highest_id_ever(self, conn: AsyncConnection) -> int | None:
        """The highest message ID this database has handed out, deleted rows included."""

    @abstractmethod
    async def insert_rows(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        """Insert exported rows as they are (IDs kept), ``sent_at`` stored as the server does."""

    async def ids_imported(self, conn: AsyncConnection, last: int) -> None:
        """After an import: later messages must get IDs above ``last``."""
        return None

    def remove_if_new(self) -> None:
        """Undo a database an import created and could not fill (SQLite: the files)."""
        return None

    # --- observability -----------------------------------------------------------------------

    def time_commits(self, count: int, seconds: float) -> list[float]:
        """Seconds each of up to ``count`` commits of one message took (at most ``seconds``
        in all), made as the server's writer makes them, with no server running: the floor
        ``chatlog bench`` sets chatlog's latency against. Empty where not measured."""
        return []

    def gauges(self) -> list[Gauge]:
        """Backend-specific figures for ``/metrics``."""
        return []


__all__ = [
    "CoreView",
    "Feed",
    "Gauge",
    "Listener",
    "LiveConnection",
    "LogBackend",
    "LogUnavailable",
    "LogView",
    "NewMessage",
    "Node",
    "Op",
    "ReadOnly",
    "SearchIndex",
    "StoredMessage",
    "WriteSession",
]
