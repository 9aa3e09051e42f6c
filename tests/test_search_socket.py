"""The socket's Search and History Around frames, on both backends: answers, paging, rooms,
limits, the rate limit and bad queries."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.backends import Backend, rows
from tests.helpers import Start
from tests.wsclients import ChatClient, Connect, b64, ws_url


async def _send_all(client: ChatClient, texts: list[str]) -> list[int]:
    ids = []
    for body in texts:
        await client.say(body)
        ids.append((await client.recv_chat(body))["ID"])
    return ids


async def _search(client: ChatClient, **search: Any) -> dict[str, Any]:
    await client.ws.send_str(json.dumps({"Search": search}))
    return await client.recv("Search")


async def test_search_answers_chat_frames_with_snippets(connect: Connect) -> None:
    """Search answers the room's matching Chat frames, newest first, each plus its Snippet."""
    alice = await connect(room="lobby")
    await alice.alias("alice")
    ids = await _send_all(alice, ["Café at noon", "no match here", "the CAFE is closed"])
    answer = await _search(alice, Query="cafe")
    assert answer["Type"] == "Search" and answer["Query"] == "cafe"
    assert answer["Complete"] is True
    assert [m["ID"] for m in answer["Messages"]] == [ids[2], ids[0]]
    live = {m["ID"]: m for m in alice.seen if m.get("Type") == "Chat"}
    for message in answer["Messages"]:
        snippet = message.pop("Snippet")
        assert message == live[message["ID"]]
        assert snippet[1] in ("Café", "CAFE")
    assert (await _search(alice, Query="nothinglikethis"))["Messages"] == []


async def test_paging_and_limit(connect: Connect) -> None:
    """Limit caps an answer (at most 100), Complete says whether more are left, Before pages."""
    client = await connect()
    ids = await _send_all(client, [f"word number {i}" for i in range(5)])
    first = await _search(client, Query="word", Limit=2)
    assert [m["ID"] for m in first["Messages"]] == [ids[4], ids[3]]
    assert first["Complete"] is False
    rest = await _search(client, Query="word", Limit=10, Before=ids[3])
    assert [m["ID"] for m in rest["Messages"]] == [ids[2], ids[1], ids[0]]
    assert rest["Complete"] is True
    await _send_all(client, [f"many {i}" for i in range(105)])
    capped = await _search(client, Query="many", Limit=1000)
    assert len(capped["Messages"]) == 100 and capped["Complete"] is False


async def test_search_never_crosses_rooms(connect: Connect) -> None:
    """A search returns only messages of the connection's own room."""
    a, b = await connect(room="a"), await connect(room="b")
    await _send_all(a, ["secret plan in a"])
    mine = await _send_all(b, ["public plan in b"])
    answer = await _search(b, Query="plan")
    assert [m["ID"] for m in answer["Messages"]] == mine
    assert all(m["Room"] == "b" for m in answer["Messages"])


async def test_bad_queries_get_an_error_and_the_connection_carries_on(
    connect: Connect, backend: Backend
) -> None:
    """An unsearchable query or a bad field gets an Error frame; the socket stays usable."""
    client = await connect()
    for search, code in (
        ({"Query": '"open'}, "bad-query"),
        ({"Query": "-only"}, "bad-query"),
        ({"Query": "!!!"}, "bad-query"),
        ({"Query": 5}, "bad-type"),
        ({"Query": "x" * 513}, "bad-type"),
        ({"Query": "x", "Limit": 0}, "bad-type"),
        ({"Query": "x", "Before": "9"}, "bad-type"),
    ):
        await client.ws.send_str(json.dumps({"Search": search}))
        error = await client.recv("Error")
        assert error["Code"] == code, (search, error)
    await client.ws.send_str(json.dumps({"Search": "cafe"}))
    assert (await client.recv("Error"))["Code"] == "bad-type"
    await client.say("still here")
    await client.recv_chat("still here")
    assert ("bad-query",) in rows(backend.db, "SELECT kind FROM errors")


async def test_searches_count_against_the_rate_limit(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """Search frames pass the per-connection rate limit like any other frame."""
    server = await start(rate=1, burst=3)
    client = await ChatClient.connect(session, ws_url(server))
    for _ in range(6):
        await client.ws.send_str(json.dumps({"Search": {"Query": "x"}}))
    codes = []
    for _ in range(6):
        frame = await client.next()
        while frame.get("Type") not in ("Search", "Error"):
            frame = await client.next()
        codes.append(frame.get("Code", "Search"))
    assert codes.count("Search") == 3 and codes.count("rate-limited") == 3


async def test_history_around_shows_a_hit_in_context(connect: Connect) -> None:
    """History Around returns the room's messages around an ID, it included, oldest first."""
    client = await connect(room="ctx")
    other = await connect(room="elsewhere")
    ids = await _send_all(client, [f"line {i}" for i in range(10)])
    await _send_all(other, ["not in ctx"])
    await client.ws.send_str(json.dumps({"History": {"Around": ids[5], "Limit": 4}}))
    page = await client.recv("History")
    assert page["Around"] == ids[5]
    assert [m["ID"] for m in page["Messages"]] == ids[3:7]
    assert page["Complete"] is False
    assert all(m["Message"].startswith(b64("line")[:4]) for m in page["Messages"])
    await client.ws.send_str(json.dumps({"History": {"Around": ids[1], "Limit": 50}}))
    whole = await client.recv("History")
    assert [m["ID"] for m in whole["Messages"]] == ids and whole["Complete"] is True
    await client.ws.send_str(json.dumps({"History": {"Around": 3, "Before": 4}}))
    assert (await client.recv("Error"))["Code"] == "bad-type"


def test_search_and_around_frames_parse() -> None:
    """The pure parser: Search defaults and caps its Limit; Around is a History field."""
    from chatlog import protocol

    parse = protocol.parse_client_frame
    assert parse('{"Search": {"Query": "x"}}') == protocol.SearchFrame("x", 20, None)
    assert parse('{"Search": {"Query": "x", "Limit": 999, "Before": 7}}') == (
        protocol.SearchFrame("x", 100, 7)
    )
    assert parse('{"History": {"Around": 5, "Limit": 9}}') == protocol.HistoryRequest(
        None, 9, around=5
    )
