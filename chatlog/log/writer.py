"""The single writer: every write of a running server goes through one :class:`Writer` task.

It group-commits: it takes everything that queued up since its last commit into one
transaction, and only after ``COMMIT`` returns does it hand the stored rows, in ID order, to
the fan-out callback. So nothing reaches a socket before it is durable, and throughput does
not collapse to one fsync per message. Presence and error writes (ops) queue in the same
line, so a connection's row lands before its alias and its close. Edits and deletions are
ops whose result is an :class:`~chatlog.log.edits.Appended`: their event rows are handed to
the fan-out callback after their commit, in queue order like messages (after the files were
scrubbed, when text was erased).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from chatlog.log.backend import LogBackend, WriteSession
from chatlog.log.edits import Appended
from chatlog.log.model import NewMessage, Op, StoredMessage, utcnow

log = logging.getLogger(__name__)

#: Seconds the writer waits before trying an unreachable database again.
RECONNECT_DELAY = 0.5

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
        backend: LogBackend,
        on_commit: OnCommit,
        on_failure: OnFailure,
        *,
        batch_max: int = 1000,
        on_stats: OnStats | None = None,
    ) -> None:
        self._backend = backend
        self._on_commit = on_commit
        self._on_failure = on_failure
        self._on_stats = on_stats
        self._batch_max = batch_max
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=batch_max * 8)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Futures of messages whose sender waits for the commit (:meth:`post`), by id().
        self._waiting: dict[int, asyncio.Future[StoredMessage]] = {}
        #: Group commits of messages, and the rows they stored (for metrics).
        self.commits = 0
        self.rows = 0

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

    async def post(self, message: NewMessage) -> StoredMessage:
        """Queue a message and wait for its commit; its stored row (raises what the commit
        raised: nothing was stored)."""
        future: asyncio.Future[StoredMessage] = asyncio.get_running_loop().create_future()
        self._waiting[id(message)] = future
        try:
            await self.append(message)
            return await future
        finally:
            self._waiting.pop(id(message), None)

    async def execute(self, op: Op) -> Any:
        """Run ``op`` in its own savepoint on the writer, in queue order; return its result."""
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
                async with self._backend.writing() as session:
                    while not (stopping and self._queue.empty()):
                        batch, stopping = await self._next_batch(stopping)
                        if batch and not await self._process(session, batch):
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

    async def _process(self, session: WriteSession, batch: list[_Item]) -> bool:
        """Commit a batch in queue order: each run of messages, and each run of ops, is one
        transaction (ops each in a savepoint, so one failing op does not undo the others)."""
        ok = True
        messages_run: list[NewMessage] = []
        ops_run: list[tuple[Op, asyncio.Future[Any]]] = []
        for item in batch:
            if isinstance(item, NewMessage):
                if ops_run:
                    ok = await self._run_ops(session, ops_run) and ok
                    ops_run = []
                messages_run.append(item)
            else:
                if messages_run:
                    ok = await self._commit_messages(session, messages_run) and ok
                    messages_run = []
                ops_run.append(item)
        if ops_run:
            ok = await self._run_ops(session, ops_run) and ok
        if messages_run:
            ok = await self._commit_messages(session, messages_run) and ok
        await session.between_batches()
        return ok

    async def _commit_messages(self, session: WriteSession, batch: list[NewMessage]) -> bool:
        started = time.perf_counter()
        try:
            stored = await session.append(batch, utcnow())
        except Exception as exc:
            log.error("commit of %d messages failed: %s", len(batch), exc)
            self._on_failure(batch, exc)
            self._resolve(batch, None, exc)
            return False
        self.commits += 1
        self.rows += len(batch)
        if self._on_stats is not None:
            self._on_stats(len(batch), time.perf_counter() - started)
        self._on_commit(stored)
        self._resolve(batch, stored, None)
        return True

    async def _run_ops(
        self, session: WriteSession, ops: list[tuple[Op, asyncio.Future[Any]]]
    ) -> bool:
        async with session.holding_delivery():
            if not await _run_ops(session, ops):
                return False
            appended = [
                f.result()
                for _op, f in ops
                if f.done() and not f.cancelled() and f.exception() is None
                if isinstance(f.result(), Appended)
            ]
            if any(a.erased for a in appended):
                await session.scrub()
        rows = [row for a in appended for row in a.rows]
        if rows:
            self._on_commit(rows)
        return True

    def _resolve(
        self, batch: list[NewMessage], stored: list[StoredMessage] | None, exc: Exception | None
    ) -> None:
        if not self._waiting:
            return
        for i, message in enumerate(batch):
            future = self._waiting.get(id(message))
            if future is None or future.done():
                continue
            if stored is not None:
                future.set_result(stored[i])
            else:
                future.set_exception(exc or RuntimeError("not stored"))


async def _run_ops(session: WriteSession, ops: list[tuple[Op, asyncio.Future[Any]]]) -> bool:
    conn = session.conn
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
