"""Several `chatlog serve` processes on one real PostgreSQL behave as one chat server.

Each test gets its own freshly created database (the ``backend`` fixture, pinned to PostgreSQL),
dropped afterwards. The tests skip without CHATLOG_TEST_POSTGRES_URL, and fail instead under
CI=true. What one server does on PostgreSQL as on SQLite (chat, resume, history, nonces,
retention, replay, export and import) runs on both backends in the other modules; here is what
only PostgreSQL has: several servers on one database, advisory locks, LISTEN/NOTIFY, node rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest
from alembic import command
from sqlalchemy import Connection

from chatlog.history.replay import json_line
from chatlog.log import migrate
from chatlog.log.backend import LiveConnection, Node
from chatlog.log.model import NewMessage, StoredMessage
from chatlog.log.open import open_log
from chatlog.log.postgres.doorbell import PostgresFeed
from chatlog.log.schema import COLUMNS
from chatlog.log.writer import Writer
from chatlog.settings import database_url
from tests.backends import Backend, postgres_server_url, rows
from tests.helpers import ServerProcess, eventually, run_cli
from tests.wsclients import ChatClient, Connect, b64, ws_url

pytestmark = [pytest.mark.postgres, pytest.mark.backends("postgres")]

#: Short presence timings so a dead server is noticed quickly in tests.
NODE_HEARTBEAT, NODE_TIMEOUT = 0.5, 3.0
#: The stated ghost bound for these timings (README: node-timeout + node-heartbeat).
GHOST_BOUND = NODE_TIMEOUT + NODE_HEARTBEAT
WAIT = 20.0


@pytest.fixture
def pg_url(backend: Backend) -> str:
    """This test's own fresh PostgreSQL database."""
    return backend.db


@contextlib.asynccontextmanager
async def cluster(url: str, count: int) -> AsyncIterator[list[ServerProcess]]:
    """``count`` server processes on one database, started together (they migrate in turn)."""
    servers = [
        ServerProcess(
            url, "--node-heartbeat", str(NODE_HEARTBEAT), "--node-timeout", str(NODE_TIMEOUT)
        )
        for _ in range(count)
    ]
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        yield servers
    finally:
        for server in servers:
            server.__exit__()


async def join(
    session: aiohttp.ClientSession, server: ServerProcess, room: str = "main", **query: Any
) -> ChatClient:
    return await ChatClient.connect(session, ws_url(server, room=room, **query))


async def chats_until(client: ChatClient, last_text: str, timeout: float = WAIT) -> list[Any]:
    """Every Chat frame up to and including the one carrying ``last_text``."""
    frames: list[Any] = []
    async with asyncio.timeout(timeout):
        while not frames or frames[-1]["Message"] != b64(last_text):
            frames.append(await client.recv("Chat"))
    return frames


async def chats_until_closed(client: ChatClient) -> list[Any]:
    """Chat frames until the socket dies (its server was killed)."""
    frames: list[Any] = []
    async with asyncio.timeout(WAIT):
        async for msg in client.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                if frame.get("Type") == "Chat":
                    frames.append(frame)
    return frames


def log_of(url: str, room: str) -> list[tuple[int, str]]:
    return [
        (row_id, message)
        for row_id, message in rows(
            url, "select id, message from messages where room = ? order by id", room
        )
    ]


def seen(frames: Sequence[Any]) -> list[tuple[int, str]]:
    return [(frame["ID"], frame["Message"]) for frame in frames]


async def say_many(client: ChatClient, tag: str, count: int, pause: float = 0.0) -> None:
    for i in range(count):
        await client.say(f"{tag}-{i}")
        await asyncio.sleep(pause)


def _check(sync_conn: Connection) -> None:
    cfg = migrate.alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.check(cfg)


async def test_migrations_upgrade_check_and_downgrade_on_postgres(pg_url: str) -> None:
    """The same alembic chain builds the schema on PostgreSQL, shows no drift, and drops it."""
    log = open_log(database_url(pg_url))
    query = "select tablename from pg_tables where schemaname = 'public' order by 1"
    try:
        await log.migrate()
        assert await log.revision() == migrate.head()
        async with log.engine.connect() as conn:
            await conn.run_sync(_check)
        tables = {tablename for (tablename,) in rows(pg_url, query)}
        assert {"messages", "users", "websocket_connections", "errors", "meta", "nodes"} <= tables
        await log.downgrade("base")
        assert rows(pg_url, query) == [("alembic_version",)]
        await log.migrate()
        async with log.engine.connect() as conn:
            await conn.run_sync(_check)
    finally:
        await log.dispose()


class Recording:
    """A listener with one room and no sockets that remembers what the feed delivered."""

    def __init__(self) -> None:
        self.published: list[StoredMessage] = []

    def rooms(self) -> set[str]:
        return {"r"}

    def deliver(self, stored: list[StoredMessage]) -> None:
        self.published.extend(stored)

    def presence(self, room: str, aliases: list[str]) -> None:
        return None

    def connections(self) -> list[LiveConnection]:
        return []


async def test_no_row_is_skipped_under_concurrent_writers(pg_url: str) -> None:
    """Three writers on three connections commit small batches concurrently while a reader
    follows "id > last" in tiny pages: it publishes every row exactly once, in ID order."""
    url = database_url(pg_url)
    logs = [open_log(url) for _ in range(4)]
    hub = Recording()
    reader = PostgresFeed(logs[0].engine, hub, Node("reader"), poll=0.02, page=7)
    writers: list[Writer] = []
    try:
        await logs[0].migrate()
        await reader.prepare()
        await reader.start()
        for log in logs[1:]:
            writer = Writer(log, lambda _s: None, _fail, batch_max=3)
            await writer.start()
            writers.append(writer)

        async def write(writer: Writer, tag: int) -> None:
            for n in range(150):
                text = f"{tag}-{n}"
                raw = json.dumps({"Message": b64(text), "Author": "w"})
                await writer.append(NewMessage("r", f"ws{tag}", "w", b64(text), text, raw, {}))
                if n % 4 == 0:
                    await asyncio.sleep(0)

        await asyncio.gather(*(write(w, i) for i, w in enumerate(writers)))
        for writer in writers:
            await writer.close()
        ids = [row_id for row_id, _ in log_of(pg_url, "r")]
        assert len(ids) == 450
        await eventually(lambda: reader.last >= ids[-1], timeout=WAIT)
        assert [m.id for m in hub.published] == ids
    finally:
        await reader.close()
        for log in logs:
            await log.dispose()


def _fail(batch: list[NewMessage], exc: BaseException) -> None:
    raise AssertionError(f"a batch of {len(batch)} failed: {exc}")


@pytest.mark.parametrize("count", [2, 3])
async def test_every_client_sees_its_room_once_in_one_id_order(pg_url: str, count: int) -> None:
    """Clients spread over 2 or 3 servers, all sending at once: each client gets every message
    of its room exactly once, in the log's ID order, the same order for everyone."""
    async with cluster(pg_url, count) as servers, aiohttp.ClientSession() as session:
        rooms: dict[str, list[ChatClient]] = {"a": [], "b": []}
        for server in servers:
            for room in ("a", "a", "b"):
                rooms[room].append(await join(session, server, room))
        per_sender = 15
        readers = {
            room: [asyncio.create_task(c.chats(len(cs) * per_sender, WAIT)) for c in cs]
            for room, cs in rooms.items()
        }
        await asyncio.gather(
            *(
                say_many(c, f"{room}{i}", per_sender)
                for room, cs in rooms.items()
                for i, c in enumerate(cs)
            )
        )
        for room, clients in rooms.items():
            got = [seen(frames) for frames in await asyncio.gather(*readers[room])]
            expected = log_of(pg_url, room)
            assert len(expected) == len(clients) * per_sender
            assert all(frames == expected for frames in got)
            # Nothing more was queued behind: the next Chat each client gets is the sentinel.
            await clients[-1].say(f"end-{room}")
            for client in clients:
                assert (await client.recv("Chat"))["Message"] == b64(f"end-{room}")


async def test_resume_on_another_server_without_gap_or_duplicate(pg_url: str) -> None:
    """A client that saw up to ID n on server A resumes on server B while messages keep coming:
    it gets exactly the IDs after n, in order; its alias showed up and left on B too; a
    SIGTERMed server removes its node row."""
    async with cluster(pg_url, 2) as (a, b), aiohttp.ClientSession() as session:
        sender = await join(session, b)
        reader = await join(session, a)
        await reader.alias("reader")
        await sender.until_users("reader")  # presence crossed from A to B
        await say_many(sender, "before", 10)
        before = await reader.chats(10)
        last = before[-1]["ID"]
        await reader.close()
        await sender.until_users()
        sending = asyncio.create_task(say_many(sender, "during", 40, pause=0.005))
        await asyncio.sleep(0.05)
        resumed = await join(session, b, since=last)
        await sending
        await sender.say("end")
        after = await chats_until(resumed, "end")
        log = log_of(pg_url, "main")
        assert seen(before) + seen(after) == log
        marker = next(f for f in resumed.seen if f.get("Type") == "Resumed")
        assert marker["From"] == last + 1 and marker["Complete"] is True
        # A clean stop removes the server's own node row at once (no sweep needed).
        assert len(rows(pg_url, "select node from nodes")) == 2
        assert a.terminate() == 0
        assert len(rows(pg_url, "select node from nodes")) == 1


async def test_sigkill_one_server_under_load(pg_url: str) -> None:
    """SIGKILL a server while everyone sends: its client resumes on another server with
    nothing lost, and its user leaves the other servers' user lists within the stated bound."""
    async with cluster(pg_url, 3) as (a, b, c), aiohttp.ClientSession() as session:
        alice, bob, carol = await join(session, a), await join(session, b), await join(session, c)
        for client, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
            await client.alias(name)
        await carol.until_users("alice", "bob", "carol")
        stop = asyncio.Event()

        async def keep_sending(client: ChatClient, tag: str) -> None:
            n = 0
            with contextlib.suppress(ConnectionError, RuntimeError):
                while not stop.is_set() and not client.ws.closed:
                    await client.say(f"{tag}-{n}")
                    n += 1
                    await asyncio.sleep(0.01)

        alice_before = asyncio.create_task(chats_until_closed(alice))
        bob_all = asyncio.create_task(chats_until(bob, "end", 60))
        senders = [asyncio.create_task(keep_sending(x, t)) for x, t in ((alice, "a"), (bob, "b"))]
        await asyncio.sleep(1.0)
        a.kill()
        before = await alice_before
        assert before, "alice received messages before her server died"
        # The ghost leaves carol's list (on another server) within the bound, plus scheduling.
        await carol.until_users("bob", "carol", timeout=GHOST_BOUND + 3)
        alice2 = await join(session, b, since=before[-1]["ID"])
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*senders)
        await bob.say("end")
        after = await chats_until(alice2, "end")
        log = log_of(pg_url, "main")
        assert seen(before) + seen(after) == log
        assert seen(await bob_all) == log
        await chats_until(carol, "end")  # carol's list waits skipped chats; ``seen`` has all
        assert seen([f for f in carol.seen if f.get("Type") == "Chat"]) == log


async def test_killed_listener_delays_but_never_loses(pg_url: str) -> None:
    """Terminating every server's LISTEN connection mid-load (lost notifications) delays
    delivery until the listener reconnects or the timer fires; nothing is lost."""
    async with cluster(pg_url, 2) as (a, b), aiohttp.ClientSession() as session:
        x, y = await join(session, a), await join(session, b)
        readers = [asyncio.create_task(chats_until(c, "end")) for c in (x, y)]
        sending = [
            asyncio.create_task(say_many(c, t, 60, pause=0.01)) for c, t in ((x, "x"), (y, "y"))
        ]
        await asyncio.sleep(0.2)
        killed = rows(
            pg_url,
            "select pg_terminate_backend(pid) from pg_stat_activity "
            "where application_name like 'chatlog-listener-%' and datname = current_database()",
        )
        assert len(killed) == 2
        await asyncio.gather(*sending)
        await y.say("end")
        got = [seen(frames) for frames in await asyncio.gather(*readers)]
        log = log_of(pg_url, "main")
        assert len(log) == 121 and got == [log, log]
        await eventually(lambda: len(_listeners(pg_url)) == 2, timeout=WAIT)  # both reconnected


def _listeners(url: str) -> list[Any]:
    return rows(
        url,
        "select pid from pg_stat_activity "
        "where application_name like 'chatlog-listener-%' and datname = current_database()",
    )


def test_bench_measures_two_postgres_servers_against_sqlite() -> None:
    """`chatlog bench --postgres` spreads clients over two PostgreSQL-backed servers: nothing
    lost, repeated or out of order, and the report compares them with SQLite."""
    url = postgres_server_url()
    out = run_cli(
        "bench", "--spawn", "--postgres", url, "--pg-servers", "2",
        *("--clients", "6", "--senders", "4", "--messages", "200", "--json"),
        env={"PYTHONUNBUFFERED": "1"}, process=True, timeout=90,
    )  # fmt: skip
    assert out.exit_code == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["results"]) == {"chatlog", "postgres-2"}
    pg = report["results"]["postgres-2"]
    assert pg["lost"] == 0 and pg["duplicates"] == 0 and pg["out_of_order"] == 0
    assert pg["deliveries"] == 200 * 6
    assert {"deliveries_per_s", "latency_ms.p99"} <= set(report["vs_sqlite"]["postgres-2"])


async def _cli(*args: str) -> Any:
    """``python -m chatlog ARGS`` in a subprocess, as a user runs it."""
    return await asyncio.to_thread(run_cli, *args, process=True)


async def test_replay_and_sql_read_a_postgres_log(pg_url: str) -> None:
    """`chatlog replay` and `chatlog sql` work on a log two servers wrote to PostgreSQL: wire
    replay is the frames the sockets got, --follow prints new rows, jsonl replay of a range is
    the SQL for it line for line, and a write through `sql` is refused with nothing changed."""
    async with cluster(pg_url, 2) as (a, b), aiohttp.ClientSession() as session:
        x, y = await join(session, a, "lobby"), await join(session, b, "lobby")
        z = await join(session, b, "dev")
        await x.alias("alice")
        await y.alias("dän")
        lobby = []
        for i, text in enumerate(["plain", "tab\there", "emoji 😀", 'q " \\', "end"]):
            await (x if i % 2 else y).say(text)
            # One at a time: x and y are on different servers, so a message x sent may commit
            # after a later one of y's; then "end" was not the last and --follow saw the rest.
            lobby.append(await x.recv_chat(text))
        await z.say("in dev")
        dev = [await z.recv("Chat")]
        # --follow on PostgreSQL: prints what commits after it started, then stops at --limit.
        head = max(lobby[-1]["ID"], dev[0]["ID"])
        follow = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chatlog", "replay", f"{head + 1}..", "--follow",
            "--limit", "2", "--format", "jsonl", "--db", pg_url,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(1.0)  # let it reach its live phase (either way nothing is missed)
        await x.say("live 1")
        await y.say("live 2")
        followed, _ = await asyncio.wait_for(follow.communicate(), WAIT)
        assert follow.returncode == 0
        live = await x.chats(2)  # live 1 and live 2, in whichever order they committed
        assert [json.loads(line)["id"] for line in followed.splitlines()] == [f["ID"] for f in live]
    frames = sorted(lobby + dev + live, key=lambda f: f["ID"])
    wire = await _cli("replay", "--db", pg_url, "--format", "wire")
    assert wire.exit_code == 0, wire.stderr
    assert [json.loads(line) for line in wire.stdout.splitlines()] == frames
    first, last = lobby[1]["ID"], lobby[3]["ID"]
    replayed = await _cli(
        "replay", f"{first}..{last}", "--room", "lobby", "--db", pg_url, "--format", "jsonl"
    )
    selected = await _cli(
        "sql",
        "--db",
        pg_url,
        "--format",
        "jsonl",
        f"SELECT {', '.join(COLUMNS)} FROM messages "
        f"WHERE room = 'lobby' AND id BETWEEN {first} AND {last} ORDER BY id",
    )
    assert replayed.exit_code == selected.exit_code == 0, replayed.stderr + selected.stderr
    # Byte for byte what the SQL for the range returns, in replay's JSON form (json_line).
    selection = rows(
        pg_url,
        f"SELECT {', '.join(COLUMNS)} FROM messages "
        "WHERE room = 'lobby' AND id BETWEEN ? AND ? ORDER BY id",
        first,
        last,
    )
    assert replayed.stdout.encode() == b"".join(json_line(r) + b"\n" for r in selection)
    assert len(selection) == 3
    # `chatlog sql` returns the same rows (it prints sent_at in its own ISO form).
    got = [json.loads(line) for line in selected.stdout.splitlines()]
    want = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert [{**r, "sent_at": None} for r in got] == [{**r, "sent_at": None} for r in want]
    refused = await _cli("sql", "--db", pg_url, "DELETE FROM messages")
    assert refused.exit_code == 1 and "read-only" in refused.stderr
    assert len(rows(pg_url, "select id from messages")) == len(frames)


async def test_swept_live_server_registers_its_sockets_again(connect: Connect, pg_url: str) -> None:
    """A live server whose rows were swept (as if it had missed heartbeats) puts its sockets'
    rows back on its next heartbeat and re-sends the user list."""
    alice = await connect()
    await alice.alias("alice")
    for table in ("users", "websocket_connections", "nodes"):
        # Off the loop: the server on this loop may hold these rows in a heartbeat transaction.
        await asyncio.to_thread(rows, pg_url, f"delete from {table}")
    await alice.until_users("alice")
    assert rows(pg_url, "select alias from users") == [("alice",)]
    assert len(rows(pg_url, "select node from nodes")) == 1
