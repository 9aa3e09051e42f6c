"""Edit and Delete frames over real sockets, on SQLite and PostgreSQL: who may, what the room
sees, what the log keeps, and what a resume and History show afterwards."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from chatlog.server import auth
from tests.backends import Backend, rows, scalar
from tests.helpers import Start
from tests.wsclients import ChatClient, Connect, b64, ws_url

SECRET = "edits-secret-0123456789"


async def edit(client: ChatClient, target: int, text: str) -> None:
    await client.ws.send_str(json.dumps({"Edit": {"ID": target, "Message": b64(text)}}))


async def delete(client: ChatClient, target: int) -> None:
    await client.ws.send_str(json.dumps({"Delete": {"ID": target}}))


async def post(client: ChatClient, text: str) -> int:
    await client.say(text)
    return int((await client.recv_chat(text))["ID"])


async def backlog(client: ChatClient) -> list[dict[str, Any]]:
    """Every frame before the Resumed marker."""
    got = []
    while (frame := await client.next())["Type"] != "Resumed":
        if frame["Type"] not in ("Status", "userlist"):
            got.append(frame)
    return got


async def test_edit_reaches_the_room_and_keeps_the_old_version(
    connect: Connect, backend: Backend
) -> None:
    """An Edit is appended with a new ID, sent to the room, applied to the row, revision kept."""
    alice, bob = await connect(), await connect()
    await alice.alias("alice")
    target = await post(alice, "helo")
    await edit(alice, target, "hello")
    seen = [await c.recv("Edit") for c in (alice, bob)]
    assert seen[0] == seen[1]
    event = seen[0]
    assert event["Target"] == target and event["ID"] > target
    assert event["Message"] == b64("hello") and event["Author"] == "alice"
    assert event["Room"] == "main" and len(event["Sent"]) == 19
    assert rows(backend.db, "select kind, target_id from messages where id = ?", event["ID"]) == [
        ("edit", target)
    ]
    ((text, message, edited),) = rows(
        backend.db, "select text, message, edited_at from messages where id = ?", target
    )
    assert (text, message) == ("hello", b64("hello")) and edited is not None
    assert rows(
        backend.db, "select text, edit_id from message_revisions where message_id = ?", target
    ) == [("helo", event["ID"])]


async def test_delete_leaves_a_tombstone_and_erases_the_text(
    connect: Connect, backend: Backend
) -> None:
    """A Delete is sent to the room; the row keeps its ID with no text, edits and revisions too."""
    alice, bob = await connect(), await connect()
    target = await post(alice, "first words")
    await edit(alice, target, "second words")
    await bob.recv("Edit")
    await delete(alice, target)
    event = await bob.recv("Delete")
    assert event["Target"] == target and event["ID"] > target
    assert rows(
        backend.db,
        "select message, text, raw from messages where id = ? or target_id = ? order by id",
        target,
        target,
    ) == [
        ("", "", "{}"),
        ("", "", json.dumps({"Edit": {"ID": target}}, separators=(",", ":"))),
        ("", "", json.dumps({"Delete": {"ID": target}})),
    ]
    assert scalar(backend.db, "select count(*) from message_revisions") == 0
    assert scalar(backend.db, "select deleted_at is not null from messages where id = ?", target)
    await alice.ws.send_str(json.dumps({"History": {}}))
    history = (await alice.recv("History"))["Messages"]
    assert [m["ID"] for m in history] == [target]  # events are not history entries
    assert "Message" not in history[0] and "Deleted" in history[0]


async def test_refused_changes_change_nothing(connect: Connect, backend: Backend) -> None:
    """Unknown ID, another room, someone else's or a deleted message, a bad body: Error frames."""
    alice, mallory = await connect(), await connect()
    elsewhere = await connect(room="other")
    target = await post(alice, "mine")
    away = await post(elsewhere, "over there")
    gone = await post(alice, "gone soon")
    await delete(alice, gone)
    await alice.recv("Delete")
    before = rows(backend.db, "select * from messages order by id")
    cases: list[tuple[ChatClient, dict[str, Any], str]] = [
        (alice, {"Edit": {"ID": 999999, "Message": b64("x")}}, "not-found"),
        (alice, {"Delete": {"ID": away}}, "not-found"),
        (mallory, {"Edit": {"ID": target, "Message": b64("pwned")}}, "not-allowed"),
        (mallory, {"Delete": {"ID": target}}, "not-allowed"),
        (alice, {"Edit": {"ID": gone, "Message": b64("back")}}, "not-found"),
        (alice, {"Delete": {"ID": gone}}, "not-found"),
        (alice, {"Edit": {"ID": target, "Message": "***"}}, "invalid-base64"),
        (alice, {"Edit": {"ID": target, "Message": ""}}, "empty-message"),
        (alice, {"Edit": {"ID": target, "Message": b64("a\x07")}}, "invalid-text"),
        (alice, {"Edit": {"ID": "1", "Message": b64("x")}}, "bad-type"),
        (alice, {"Delete": 5}, "bad-type"),
    ]
    for client, frame, code in cases:
        await client.ws.send_str(json.dumps(frame))
        assert (await client.recv("Error"))["Code"] == code, frame
    assert rows(backend.db, "select * from messages order by id") == before
    recorded = [k for (k,) in rows(backend.db, "select kind from errors order by id")]
    assert recorded == [code for _c, _f, code in cases]


async def test_resume_after_an_edit_delivers_it_once(connect: Connect) -> None:
    """A client that left before an edit gets exactly that Edit frame on resume, in order."""
    alice = await connect()
    reader = await connect()
    target = await post(alice, "draft")
    last = int((await reader.recv_chat("draft"))["ID"])
    await reader.close()
    await edit(alice, target, "final")
    edited = await alice.recv("Edit")
    back = await connect(since=last)
    got = await backlog(back)
    assert got == [edited]


async def test_resume_from_before_shows_the_current_state_and_the_events(
    connect: Connect,
) -> None:
    """A backlog shows edited rows edited, deleted rows as tombstones, then carries the events."""
    alice = await connect()
    kept = await post(alice, "typo")
    dropped = await post(alice, "oops")
    await edit(alice, kept, "fixed")
    await alice.recv("Edit")
    await delete(alice, dropped)
    await alice.recv("Delete")
    got = await backlog(await connect(since=0))
    assert [(f["Type"], f.get("Target", f["ID"])) for f in got] == [
        ("Chat", kept),
        ("Chat", dropped),
        ("Edit", kept),
        ("Delete", dropped),
    ]
    assert got[0]["Message"] == b64("fixed") and "Edited" in got[0]
    assert "Message" not in got[1] and "Deleted" in got[1]
    assert got[2]["Message"] == b64("fixed")


async def test_concurrent_edits_get_one_order_and_last_wins(
    start: Start, session: aiohttp.ClientSession, backend: Backend
) -> None:
    """Two sockets of one token user edit one message at once: one order, both revisions kept."""
    server = await start(auth_secret=SECRET)
    token = auth.issue(SECRET, "carol")
    one, two, watcher = [
        await ChatClient.connect(session, ws_url(server, token=token)) for _ in range(3)
    ]
    target = await post(one, "v0")
    await asyncio.gather(edit(one, target, "v1"), edit(two, target, "v2"))
    seen = [[await c.recv("Edit") for _ in range(2)] for c in (one, two, watcher)]
    assert seen[0] == seen[1] == seen[2]
    winner = seen[0][-1]["Message"]
    assert scalar(backend.db, "select message from messages where id = ?", target) == winner
    revisions = [
        t
        for (t,) in rows(
            backend.db,
            "select text from message_revisions where message_id = ? order by id",
            target,
        )
    ]
    assert revisions[0] == "v0" and sorted(revisions) == [
        "v0",
        "v1" if winner == b64("v2") else "v2",
    ]


async def test_with_auth_the_token_user_is_the_author(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """With --auth-secret a new connection of the same user may edit; another user may not."""
    server = await start(auth_secret=SECRET)
    first = await ChatClient.connect(session, ws_url(server, token=auth.issue(SECRET, "dan")))
    target = await post(first, "hi")
    await first.close()
    later = await ChatClient.connect(session, ws_url(server, token=auth.issue(SECRET, "dan")))
    other = await ChatClient.connect(session, ws_url(server, token=auth.issue(SECRET, "eve")))
    await delete(other, target)
    assert (await other.recv("Error"))["Code"] == "not-allowed"
    await edit(later, target, "hi there")
    assert (await later.recv("Edit"))["Target"] == target


async def test_edit_window_and_rate_limit(start: Start, session: aiohttp.ClientSession) -> None:
    """Past --edit-window a change is not-allowed; changes count against the rate limit."""
    server = await start(edit_window=0, rate=0.001, burst=3)
    client = await ChatClient.connect(session, ws_url(server))
    target = await post(client, "now")
    await edit(client, target, "later")
    assert (await client.recv("Error"))["Code"] == "not-allowed"
    await delete(client, target)
    assert (await client.recv("Error"))["Code"] == "not-allowed"
    await delete(client, target)
    assert (await client.recv("Error"))["Code"] == "rate-limited"


async def test_a_retried_nonce_after_a_delete_gets_the_tombstone(connect: Connect) -> None:
    """A send retried with the nonce of a message deleted since is answered with the
    tombstone (same ID), not stored again."""
    alice = await connect()
    await alice.say("once", Nonce="n-1")
    target = int((await alice.recv_chat("once"))["ID"])
    await delete(alice, target)
    await alice.recv("Delete")
    await alice.say("once", Nonce="n-1")
    again = await alice.recv("Chat")
    assert again["ID"] == target and "Deleted" in again and "Message" not in again


async def test_migration_0004_downgrades_and_upgrades_with_data(backend: Backend) -> None:
    """Down to 0002 drops the edit columns and revisions; up again keeps the messages, as chat."""
    from chatlog.log.open import open_log

    log = open_log(backend.settings().url)
    try:
        await log.migrate()
        async with log.transaction() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO messages (room, ws_id, author, message, text, raw, sent_at) "
                "VALUES ('r', 'w', 'a', 'aGk=', 'hi', '{}', '2026-12-03 11:00:00')"
            )
        await log.downgrade("0002")
        await log.migrate()
        assert await log.revision() == "0004"
    finally:
        await log.dispose()
    assert rows(backend.db, "select text, kind, target_id from messages") == [("hi", "chat", None)]


async def test_search_finds_a_message_as_it_is_now(connect: Connect) -> None:
    """An edited message is found by its new words only; a deleted one is never found again."""
    alice = await connect()

    async def found(query: str) -> list[int]:
        await alice.ws.send_str(json.dumps({"Search": {"Query": query}}))
        return [m["ID"] for m in (await alice.recv("Search"))["Messages"]]

    target = await post(alice, "the quokka sleeps")
    other = await post(alice, "a quokka wakes")
    assert await found("quokka") == [other, target]
    await edit(alice, target, "the wombat sleeps")
    await alice.recv("Edit")
    assert await found("quokka") == [other]
    assert await found("wombat") == [target]  # never the Edit event's own row
    await delete(alice, target)
    await alice.recv("Delete")
    assert await found("wombat") == []
    assert await found("sleeps") == []
