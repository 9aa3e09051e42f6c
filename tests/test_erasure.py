"""Erasure is real: deleted text is in no byte of the SQLite files; `chatlog redact` and
`chatlog erase` delete from outside a socket and reach the rooms; replay, export, import and
retention carry edits and deletions (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from pathlib import Path

import aiohttp

from tests.backends import Backend, rows, scalar
from tests.helpers import CliResult, ServerProcess, Start, run_cli
from tests.wsclients import ChatClient, Connect, b64, ws_url


def secret_text() -> str:
    """A distinctive random text (and so a distinctive base64)."""
    return "erase-me-" + secrets.token_hex(12)


def on_disk(path: Path, *texts: str) -> list[str]:
    """Which of ``texts`` (or their base64, as the raw frame holds them, or their random word,
    as the search index holds it) are in any byte of the database file, its WAL or its
    shared-memory index."""
    data = b"".join(
        Path(f"{path}{suffix}").read_bytes()
        for suffix in ("", "-wal", "-shm")
        if Path(f"{path}{suffix}").exists()
    )
    needles = [t.encode() for t in texts] + [base64.b64encode(t.encode()) for t in texts]
    needles += [t.rsplit("-", 1)[-1].encode() for t in texts]
    return [n.decode() for n in needles if n in data]


async def cli(*args: str, input: bytes | None = None) -> CliResult:
    """`chatlog ARGS` in a worker thread (the command runs its own event loop)."""
    return await asyncio.to_thread(run_cli, *args, input=input)


async def post(client: ChatClient, text: str) -> int:
    await client.say(text)
    return int((await client.recv_chat(text))["ID"])


async def test_a_deleted_text_is_in_no_file(connect: Connect, db_path: Path) -> None:
    """After the Delete frame arrives, neither version of an edited text (nor its base64) is in
    the database, the WAL or the -shm file; before it, both are there."""
    first, second = secret_text(), secret_text()
    alice = await connect()
    target = await post(alice, first)
    await alice.ws.send_str(json.dumps({"Edit": {"ID": target, "Message": b64(second)}}))
    await alice.recv("Edit")
    assert len(on_disk(db_path, first, second)) == 6  # the scan finds what is there
    await alice.ws.send_str(json.dumps({"Delete": {"ID": target}}))
    await alice.recv("Delete")
    assert on_disk(db_path, first, second) == []
    await alice.say("still working")
    await alice.recv_chat("still working")


async def test_redact_reaches_a_live_room(backend: Backend) -> None:
    """`chatlog redact` beside a running server: the room gets the Delete (with its reason)
    live, and the row is a tombstone."""
    with ServerProcess(backend.db) as server:
        async with aiohttp.ClientSession() as session:
            client = await ChatClient.connect(session, ws_url(server))
            target = await post(client, "spam spam")
            result = await asyncio.to_thread(
                run_cli, "redact", str(target), "--reason", "spam", "--db", backend.db
            )
            assert result.exit_code == 0, result.output
            assert f"deleted message {target} in room main" in result.stdout
            event = await client.recv("Delete")
            assert event["Target"] == target and event["Reason"] == "spam"
            assert event["Author"] == "system"
    assert rows(backend.db, "select text, raw from messages where id = ?", target) == [("", "{}")]


async def test_redact_then_resume_delivers_it(start: Start, backend: Backend) -> None:
    """A client resuming after a `chatlog redact` gets the Delete event, and History the
    tombstone; redacting it again, or an unknown ID, is a one-line error."""
    server = await start()
    async with aiohttp.ClientSession() as session:
        client = await ChatClient.connect(session, ws_url(server))
        target = await post(client, "oops")
        await client.close()
        result = await asyncio.to_thread(run_cli, "redact", str(target), "--db", backend.db)
        assert result.exit_code == 0, result.output
        back = await ChatClient.connect(session, ws_url(server, since=target))
        event = await back.next()
        assert event["Type"] == "Delete" and event["Target"] == target
        assert (await back.next())["Type"] == "Resumed"
    again = await asyncio.to_thread(run_cli, "redact", str(target), "--db", backend.db)
    assert again.exit_code == 1
    assert (
        again.stderr
        == f"Error: cannot redact {target}: there is no message {target} in this room\n"
    )


async def test_erase_an_author(start: Start, backend: Backend) -> None:
    """`erase --author` lists with --dry-run, asks first, then deletes every message of that
    author (in the room asked), leaving everyone else's alone; a file scan finds nothing."""
    server = await start()
    secrets_sent = [secret_text() for _ in range(3)]
    async with aiohttp.ClientSession() as session:
        bob = await ChatClient.connect(session, ws_url(server, room="r"))
        await bob.alias("bob")
        ann = await ChatClient.connect(session, ws_url(server, room="r"))
        await ann.alias("ann")
        bobs = [await post(bob, text) for text in secrets_sent]
        anns = await post(ann, "ann stays")
        elsewhere = await ChatClient.connect(session, ws_url(server, room="other"))
        await elsewhere.alias("bob")
        kept = await post(elsewhere, "bob elsewhere")

    def erase(*args: str, input: bytes | None = None) -> CliResult:
        return run_cli(
            "erase", "--author", "bob", "--room", "r", *args, "--db", backend.db, input=input
        )

    dry = await asyncio.to_thread(erase, "--dry-run")
    assert (
        dry.exit_code == 0
        and dry.stdout.splitlines()[-1] == "3 messages of bob; nothing changed (--dry-run)"
    )
    declined = await asyncio.to_thread(erase, input=b"n\n")
    assert declined.exit_code == 1
    assert scalar(backend.db, "select count(*) from messages where deleted_at is not null") == 0
    done = await asyncio.to_thread(erase, "--yes")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[-1] == "erased 3 messages of bob"
    assert [int(line.split()[2]) for line in done.stdout.splitlines()[:-1]] == bobs
    deleted = [
        i
        for (i,) in rows(
            backend.db, "select id from messages where deleted_at is not null order by id"
        )
    ]
    assert deleted == bobs and anns not in deleted and kept not in deleted
    if backend.kind == "sqlite":
        assert on_disk(backend.path, *secrets_sent) == []
    nothing = await asyncio.to_thread(erase, "--yes")
    assert nothing.stdout == "no messages of bob to erase\n"


async def test_replay_marks_edits_and_deletions(connect: Connect, backend: Backend) -> None:
    """replay --format text marks (edited) and (deleted) and names the events; --format wire is
    the current state of each row as History shows it."""
    alice = await connect()
    kept = await post(alice, "typo")
    gone = await post(alice, "regret")
    await alice.ws.send_str(json.dumps({"Edit": {"ID": kept, "Message": b64("fixed")}}))
    edit_id = (await alice.recv("Edit"))["ID"]
    await alice.ws.send_str(json.dumps({"Delete": {"ID": gone}}))
    delete_id = (await alice.recv("Delete"))["ID"]
    text = (await cli("replay", "--db", backend.db, "--format", "text")).stdout.splitlines()
    assert [line.split("> ", 1)[1] for line in text] == [
        "fixed (edited)",
        "(deleted)",
        f"(edit of {kept}) fixed",
        f"(deleted {gone})",
    ]
    assert [int(line.split()[0]) for line in text] == [kept, gone, edit_id, delete_id]
    wire = [
        json.loads(line)
        for line in (
            await cli("replay", "--db", backend.db, "--format", "wire")
        ).stdout.splitlines()
    ]
    await alice.ws.send_str(json.dumps({"History": {}}))
    assert wire[:2] == (await alice.recv("History"))["Messages"]
    assert [f["Type"] for f in wire[2:]] == ["Edit", "Delete"]


async def test_export_import_round_trips_edits(
    connect: Connect, backend: Backend, tmp_path: Path
) -> None:
    """An export with edits and deletions imports into a new log and exports the same bytes;
    purging the edited message later takes its events and revisions with it."""
    alice = await connect()
    kept = await post(alice, "one")
    gone = await post(alice, "two")
    await alice.ws.send_str(json.dumps({"Edit": {"ID": kept, "Message": b64("uno")}}))
    await alice.recv("Edit")
    await alice.ws.send_str(json.dumps({"Delete": {"ID": gone}}))
    await alice.recv("Delete")
    await post(alice, "three")
    exported = (await cli("export", "--db", backend.db)).stdout_bytes
    kinds = [json.loads(line)["kind"] for line in exported.splitlines()]
    assert kinds == ["chat", "chat", "edit", "delete", "chat"]
    (tmp_path / "log.jsonl").write_bytes(exported)
    target = str(tmp_path / "copy.db")
    assert (await cli("import", str(tmp_path / "log.jsonl"), "--db", target)).exit_code == 0
    assert (await cli("export", "--db", target)).stdout_bytes == exported
    purged = await cli("purge", "--db", backend.db, "--retain-messages", "3")
    assert purged.exit_code == 0, purged.output
    left = rows(backend.db, "select kind, target_id from messages order by id")
    assert ("edit", kept) not in left and scalar(
        backend.db, "select count(*) from message_revisions"
    ) == 0
