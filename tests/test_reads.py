"""The server's reads on the drivers themselves (chatlog.log.sqlite.reads, chatlog.log.postgres
.reads), on SQLite and PostgreSQL: the same answers as the SQLAlchemy Core view on a log the
real server wrote, and on SQLite small reads on the event loop, with a thread to fall back on."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatlog.log import retention
from chatlog.log.backend import LogBackend
from chatlog.log.open import opened
from chatlog.log.search import SearchRequest
from chatlog.log.search_query import parse
from chatlog.log.sqlite import reads
from chatlog.settings import database_url
from tests.backends import Backend
from tests.helpers import eventually
from tests.wsclients import ChatClient, Connect, b64

ROOMS = ("main", "side")


async def _chat(connect: Connect) -> list[ChatClient]:
    """Chat in two rooms over real sockets: aliases, edits, a deletion; the clients stay
    connected (their presence rows are read too)."""
    clients = []
    for room in ROOMS:
        for name in ("ann", "bo"):
            client = await connect(room=room)
            await client.alias(f"{name}-{room}")
            clients.append(client)
    ids = []
    for i in range(30):
        client = clients[i % len(clients)]
        await client.say(f"hello {i} in the release notes")
        ids.append(int((await client.recv_chat(f"hello {i} in the release notes"))["ID"]))
    main = clients[0]
    await main.ws.send_str(json.dumps({"Edit": {"ID": ids[4], "Message": b64("edited")}}))
    await main.recv("Edit")
    await main.ws.send_str(json.dumps({"Delete": {"ID": ids[8]}}))
    await main.recv("Delete")
    return clients


@pytest.fixture
async def log(backend: Backend, connect: Connect) -> AsyncIterator[tuple[LogBackend, int]]:
    """The test's log, written by the real server (still running), and its head."""
    clients = await _chat(connect)
    async with opened(database_url(backend.db), migrate=False) as opened_log:
        # A retention floor in one room, as the server's purge leaves it.
        await retention.purge(opened_log, retention.Policy(messages=10), room="side")
        async with opened_log.core_view() as view:
            head = max([await view.room_head(room) for room in ROOMS])
        yield opened_log, head
    for client in clients:
        await client.ws.close()


async def _answers(view: Any, head: int) -> list[Any]:
    """Every read of the interface, on ranges that cover edges, events and the floor."""
    out: list[Any] = []
    for room in (*ROOMS, "empty"):
        out += [
            await view.room_head(room),
            await view.room_aliases(room),
            await view.room_floor(room),
        ]
        for after, upto, limit in ((0, head, 500), (5, head - 3, 7), (head, head, 5), (9, 9, 3)):
            out.append(await view.after(room, after, upto, limit))
            out.append(await view.after(room, after, upto, limit, chat_only=True))
            for most in (0, 1, 2, limit, 30):
                out.append(await view.more_than(room, after, upto, most))
        for before in (None, head, 12, 1, 0):
            for limit in (1, 5, 500):
                out.append(await view.before(room, before, limit))
                out.append(await view.ids_before(room, before, limit))
        for query in ("release", "notes -hello", "edited", "nothinglikethis"):
            request = SearchRequest(parse(query), rooms=(room,), limit=6)
            out.append([tuple(r) for r in await view.search(request)])
            out.append([tuple(r) for r in await view.search(SearchRequest(parse(query)))])
            ranked = SearchRequest(parse(query), order="rank", limit=8)
            out.append([tuple(r) for r in await view.search(ranked)])
    return out


async def test_driver_view_answers_as_the_core_view(log: tuple[LogBackend, int]) -> None:
    """Every read (head, users, floor, backlog, History range and page, the resume limit,
    search) gives the same values, timestamps, kinds and edit/delete fields as the SQLAlchemy
    Core view."""
    backend, head = log
    async with backend.core_view() as core:
        expected = await _answers(core, head)
    async with backend.view() as view:
        assert type(view).__name__ != "CoreView"
        got = await _answers(view, head)
    assert got == expected
    messages = [m for answer in expected if isinstance(answer, list) for m in answer]
    kinds = {getattr(m, "kind", None) for m in messages}
    assert {"chat", "edit", "delete"} <= kinds  # the comparison covered every kind of row
    assert any(getattr(m, "edited_at", None) for m in messages)
    assert any(getattr(m, "deleted_at", None) for m in messages)
    assert 0 < expected[5] < head  # the side room's floor


@pytest.mark.backends("postgres")
async def test_search_in_two_steps_answers_as_the_core_view(
    log: tuple[LogBackend, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the newest IDs hold too few hits and the older ones come from the GIN index
    alone (PostgreSQL's second step), the driver view finds the Core view's rows."""
    from chatlog.log.postgres import search as pg_search

    backend, head = log
    monkeypatch.setattr(pg_search, "RECENT", 2)
    requests = [
        SearchRequest(parse("release"), rooms=("main",), limit=12),
        SearchRequest(parse("hello -edited"), before=head - 3, limit=5),
    ]
    async with backend.core_view() as core:
        expected = [[tuple(r) for r in await core.search(r)] for r in requests]
    async with backend.view() as view:
        got = [[tuple(r) for r in await view.search(r)] for r in requests]
    assert got == expected and len(expected[0]) == 12


@pytest.mark.backends("sqlite")
async def test_small_reads_run_on_the_loop_and_large_ones_on_a_thread(
    log: tuple[LogBackend, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A greeting or a small page takes no thread hop; a page that may hold more rows than
    INLINE_ROWS, and a search, take one."""
    backend, head = log
    monkeypatch.setattr(reads, "INLINE_ROWS", 10)  # the test's log is small
    pool = getattr(backend, "reads")  # noqa: B009 - the SQLite backend's own
    async with backend.view() as view:
        await view.room_head("main")
        await view.room_aliases("main")
        await view.before("main", None, 10)
        await view.after("main", head - 3, head, 500)  # the range holds 3 rows at most
        assert (pool.inline, pool.threaded) == (4, 0)
        await view.after("main", 0, head, 500)
        await view.search(SearchRequest(parse("release")))
        assert (pool.inline, pool.threaded) == (4, 2)


@pytest.mark.backends("sqlite")
async def test_a_slow_inline_read_is_taken_over_by_a_thread(
    log: tuple[LogBackend, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that runs past its time on the event loop is interrupted by SQLite and asked
    again on a thread, with the same answer; reads stay on the thread while the last one was
    slow, and come back to the loop once one is fast."""
    backend, head = log
    pool = getattr(backend, "reads")  # noqa: B009
    async with backend.view() as view:
        expected = await view.after("main", 0, head, 50)
        main_head = await view.room_head("main")
    monkeypatch.setattr(reads, "INLINE_SLOW", 0.0)  # any read is too slow for the loop
    async with backend.view() as view:
        inline, threaded = pool.inline, pool.threaded
        assert await view.after("main", 0, head, 50) == expected  # interrupted, then a thread
        assert await view.room_head("main") == main_head  # straight to the thread
        assert (pool.inline, pool.threaded) == (inline, threaded + 2)
    monkeypatch.undo()
    async with backend.view() as view:
        assert await view.after("main", 0, head, 50) == expected  # the last read was fast
    assert (pool.inline, pool.threaded) == (inline + 1, threaded + 2)


@pytest.mark.backends("sqlite")
async def test_a_view_cancelled_during_a_thread_read_keeps_its_connection_until_done(
    log: tuple[LogBackend, int],
) -> None:
    """Cancelling a view while its read runs on a thread does not hand that read's
    connection to another view before the thread is done with it; then it is reused."""
    backend, head = log
    pool = getattr(backend, "reads")  # noqa: B009
    started, finish = threading.Event(), threading.Event()
    held: list[sqlite3.Connection] = []

    def slow(db: sqlite3.Connection) -> int:
        held.append(db)
        started.set()
        finish.wait(10)
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])

    async def read() -> None:
        async with backend.view() as view:
            await pool.run(view, reads.INLINE_ROWS + 1, slow)

    task = asyncio.create_task(read())
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with backend.view() as other:  # meanwhile: another connection
        assert other.db is not held[0]
        assert await other.room_head("main") > 0
    assert held[0] not in pool._idle
    finish.set()
    await eventually(lambda: held[0] in pool._idle)
    async with backend.view() as view:
        count = len(await view.after("main", 0, head, 500))
        assert await view.more_than("main", 0, head, count - 1)
        assert not await view.more_than("main", 0, head, count)
