"""Resume, history paging, idempotent sends and retention over real sockets, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from pathlib import Path

import aiohttp

from tests.backends import Backend, rows
from tests.helpers import Start, eventually, run_cli
from tests.wsclients import ChatClient, Connect, b64, ws_url


def ids(db: str, room: str = "main", after: int = 0) -> list[int]:
    sql = "select id from messages where room = ? and id > ? order by id"
    return [i for (i,) in rows(db, sql, room, after)]


async def fill(client: ChatClient, count: int, prefix: str = "m") -> list[int]:
    for i in range(count):
        await client.say(f"{prefix}{i}")
    return [f["ID"] for f in await client.chats(count)]


async def backlog(client: ChatClient) -> tuple[list[int], dict[str, object]]:
    """The Chat IDs received before the Resumed marker, and the marker."""
    got: list[int] = []
    while True:
        frame = await client.next()
        if frame.get("Type") == "Resumed":
            return got, frame
        if frame.get("Type") == "Chat":
            got.append(frame["ID"])


async def test_resume_sends_exactly_the_missed_messages_then_live(
    connect: Connect, backend: Backend
) -> None:
    """since=N delivers the room's IDs > N in order, a Complete marker, then live messages."""
    writer = await connect(room="r")
    other_room = await connect(room="elsewhere")
    sent = await fill(writer, 10)
    await other_room.say("not for r")
    resumed = await connect(room="r", since=sent[3])
    got, marker = await backlog(resumed)
    assert got == sent[4:] == ids(backend.db, "r", sent[3])
    assert marker == {
        "Type": "Resumed",
        "From": sent[3] + 1,
        "To": sent[-1],
        "Complete": True,
        "Epoch": resumed.status["Epoch"],  # type: ignore[index]
    }
    await writer.say("live")
    assert (await resumed.recv("Chat"))["Message"] == b64("live")


async def test_status_head_allows_exact_resume_with_nothing_received(connect: Connect) -> None:
    """A client that saw nothing can resume from the Head of its Status frame without a gap."""
    writer = await connect()
    await fill(writer, 3)
    quiet = await connect()
    head = quiet.status["Head"]  # type: ignore[index]
    await quiet.close()
    later = await fill(writer, 4, "later")
    again = await connect(since=head)
    got, marker = await backlog(again)
    assert got == later and marker["Complete"] is True


async def test_empty_resume_still_sends_the_marker(connect: Connect) -> None:
    """since=0 on an empty room yields an empty backlog and a Complete marker."""
    client = await connect(since=0)
    got, marker = await backlog(client)
    assert got == [] and marker["From"] == 1 and marker["To"] == 0 and marker["Complete"]


async def test_resume_over_the_limit_tells_the_client_to_page(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A backlog above --resume-max is not sent; the marker says so and history pages it."""
    server = await start(resume_max=5)
    writer = await ChatClient.connect(session, ws_url(server))
    sent = await fill(writer, 8)
    client = await ChatClient.connect(session, ws_url(server, since=0))
    got, marker = await backlog(client)
    assert got == []
    assert marker["Complete"] is False and marker["Reason"] == "limit"
    assert marker["To"] == sent[-1] and marker["Limit"] == 5
    await client.ws.send_str(json.dumps({"History": {"Before": sent[-1] + 1, "Limit": 5}}))
    page = await client.recv("History")
    assert [m["ID"] for m in page["Messages"]] == sent[3:] and page["Complete"] is False


async def test_epoch_mismatch_is_signalled(connect: Connect) -> None:
    """A client holding IDs of another log is told so and gets the room from the start."""
    writer = await connect()
    sent = await fill(writer, 3)
    client = await connect(since=sent[-1], epoch="0" * 32)
    got, marker = await backlog(client)
    assert marker["EpochChanged"] is True and got == sent


async def test_no_gap_or_duplicate_at_the_seam_under_load(
    connect: Connect, backend: Backend
) -> None:
    """Senders stream while clients drop and resume from random IDs: each client ends with
    exactly the room's ID sequence, with no gap and no duplicate."""
    rng = random.Random(4)
    senders = [await connect() for _ in range(3)]
    total = 300

    async def send_all(client: ChatClient, n: int) -> None:
        for i in range(total // len(senders)):
            await client.say(f"s{n}-{i}")
            if i % 10 == 0:
                await asyncio.sleep(0.005)

    async def resumer(seed: int) -> list[int]:
        seen: list[int] = []
        client = await connect(since=0)
        for _ in range(6):
            deadline = asyncio.get_running_loop().time() + rng.uniform(0.02, 0.15)
            while asyncio.get_running_loop().time() < deadline:
                try:
                    frame = await client.next(timeout=0.05)
                except TimeoutError:
                    continue
                if frame.get("Type") == "Chat":
                    seen.append(frame["ID"])
            await client.close()
            # Resume from a random point at or before what was really seen: duplicates
            # of what it already holds are then expected and dropped by the client by ID,
            # but the backlog must contain every ID after the point, in order.
            point = rng.choice([0, *seen]) if seen else 0
            kept = [i for i in seen if i <= point]
            client = await connect(since=point)
            got, marker = await backlog(client)
            assert marker["Complete"] is True
            assert got == sorted(set(got)), "backlog out of order or repeated"
            seen = kept + got
        while len(seen) < total:
            frame = await client.recv("Chat")
            seen.append(frame["ID"])
        return seen

    results = await asyncio.gather(
        *(send_all(c, n) for n, c in enumerate(senders)), *(resumer(s) for s in range(4))
    )
    expected = ids(backend.db)
    assert len(expected) == total
    for seen in results[len(senders) :]:
        assert seen == expected


async def test_history_pages_backwards_in_ascending_order(connect: Connect) -> None:
    """History returns older messages oldest-first, and says when the start is reached."""
    client = await connect()
    sent = await fill(client, 12)
    await client.ws.send_str(json.dumps({"History": {"Before": sent[8], "Limit": 5}}))
    page = await client.recv("History")
    assert [m["ID"] for m in page["Messages"]] == sent[3:8] and page["Complete"] is False
    assert page["Messages"][0]["Type"] == "Chat" and page["Messages"][0]["Message"] == b64("m3")
    await client.ws.send_str(json.dumps({"History": {"Before": sent[3], "Limit": 5}}))
    page = await client.recv("History")
    assert [m["ID"] for m in page["Messages"]] == sent[:3] and page["Complete"] is True


async def test_retried_nonce_is_stored_once(connect: Connect, backend: Backend) -> None:
    """A retried nonce is stored once; the sender gets the original ID; nobody sees it twice."""
    sender, watcher = await connect(), await connect()
    await sender.say("once", Nonce="n-1")
    first = await sender.recv("Chat")
    await sender.say("once", Nonce="n-1")
    again = await sender.recv("Chat")
    assert again["ID"] == first["ID"]
    reconnected = await connect()
    await reconnected.say("once", Nonce="n-1")
    assert (await reconnected.recv("Chat"))["ID"] == first["ID"]
    await sender.say("after")
    frames = [await watcher.recv("Chat"), await watcher.recv("Chat")]
    assert [f["Message"] for f in frames] == [b64("once"), b64("after")]
    assert rows(backend.db, "select count(*) from messages where nonce='n-1'") == [(1,)]
    assert rows(backend.db, "select id from messages where nonce='n-1'") == [(first["ID"],)]


async def test_same_nonce_twice_in_one_batch(connect: Connect, backend: Backend) -> None:
    """Two copies of one nonce arriving together (one commit) still store one row."""
    sender = await connect()
    frame = json.dumps({"Message": b64("dup"), "Nonce": "same"})
    await asyncio.gather(*(sender.ws.send_str(frame) for _ in range(5)))
    got = {f["ID"] for f in await sender.chats(5)}
    assert len(got) == 1 and ids(backend.db) == list(got)


async def test_purge_signals_truncation_to_resume_and_history(
    connect: Connect, backend: Backend
) -> None:
    """After a purge, resuming or paging before the cut says Complete:false and where it starts."""
    writer = await connect(room="r")
    sent = await fill(writer, 10)
    result = await asyncio.to_thread(
        run_cli, "purge", "--db", backend.db, "--retain-messages", "4", "--room", "r"
    )
    assert result.exit_code == 0, result.output
    assert "removed 6 messages" in result.output
    client = await connect(room="r", since=sent[1])
    got, marker = await backlog(client)
    assert got == sent[6:]
    assert marker["Complete"] is False and marker["Reason"] == "retention"
    assert marker["From"] == sent[5] + 1
    await client.ws.send_str(json.dumps({"History": {"Limit": 50}}))
    page = await client.recv("History")
    assert [m["ID"] for m in page["Messages"]] == sent[6:]
    assert page["Complete"] is False and page["From"] == sent[5] + 1
    current = await connect(room="r", since=sent[7])
    got, marker = await backlog(current)
    assert got == sent[8:] and marker["Complete"] is True
    await writer.say("new")
    assert (await writer.recv("Chat"))["ID"] > sent[-1], "ids are never reused"


async def test_serve_retention_runs_in_the_background(
    start: Start, session: aiohttp.ClientSession, backend: Backend
) -> None:
    """--retain-messages keeps only the newest messages per room while the server runs."""
    server = await start(retain_messages=3, retain_every=0.05)
    client = await ChatClient.connect(session, ws_url(server))
    sent = await fill(client, 8)
    await eventually(lambda: ids(backend.db) == sent[-3:], timeout=4)
    assert ids(backend.db) == sent[-3:]


def test_purge_and_vacuum_commands(tmp_path: Path) -> None:
    """purge needs a policy, refuses a missing database, and vacuum runs on a real file."""
    missing = tmp_path / "none.db"
    result = run_cli("purge", "--db", str(missing), "--retain-days", "1")
    assert result.exit_code != 0 and "no database" in result.output and not missing.exists()
    path = tmp_path / "v.db"
    assert run_cli("db", "upgrade", "--db", str(path)).exit_code == 0
    assert run_cli("purge", "--db", str(path)).exit_code == 2
    result = run_cli("purge", "--db", str(path), "--retain-days", "7")
    assert result.exit_code == 0 and "removed 0 messages" in result.output
    assert run_cli("vacuum", "--db", str(path)).output.strip() == "vacuumed"


def test_vacuum_gives_space_back(tmp_path: Path) -> None:
    """After purging most of a large log, vacuum makes the database file smaller."""
    path = tmp_path / "big.db"
    assert run_cli("db", "upgrade", "--db", str(path)).exit_code == 0
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "insert into messages (room, ws_id, author, message, text, raw, sent_at) "
            "values ('main', 'w', 'a', 'eA==', ?, '{}', '2020-01-01 00:00:00')",
            [("x" * 500,) for _ in range(5000)],
        )
        conn.commit()
        conn.execute("pragma wal_checkpoint(truncate)")
    before = path.stat().st_size
    result = run_cli("purge", "--db", str(path), "--retain-messages", "10")
    assert "removed 4990 messages" in result.output
    assert run_cli("vacuum", "--db", str(path)).exit_code == 0
    assert path.stat().st_size < before / 10
