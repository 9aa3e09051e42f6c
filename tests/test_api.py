"""The HTTP server API under /api/: every route, every error status, the OpenAPI document."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from chatlog.settings import Settings, SettingsError
from tests.backends import Backend, scalar
from tests.helpers import Start
from tests.wsclients import ChatClient, b64, ws_url

KEY = "k" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def api(start: Start) -> TestServer:
    """A server with the API on."""
    return await start(api_key=KEY)


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


async def call(
    session: aiohttp.ClientSession,
    server: TestServer,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with session.request(
        method, url(server, path), headers={**AUTH, **(headers or {})}, **kw
    ) as response:
        body = await response.json(content_type=None)
        return response.status, body, response


async def test_post_is_stored_then_delivered_and_answered_201(
    api: TestServer, session: aiohttp.ClientSession, backend: Backend
) -> None:
    """POST a message: 201 with ID, Sent and Room after the commit; live sockets get it as a
    Chat frame from system (or the author given)."""
    client = await ChatClient.connect(session, ws_url(api, room="ops"))
    status, body, _ = await call(
        session, api, "POST", "/api/rooms/ops/messages", json={"text": "deploy"}
    )
    assert status == 201 and body["Room"] == "ops" and len(body["Sent"]) == 19
    assert scalar(backend.db, "select author from messages where id = ?", body["ID"]) == "system"
    frame = await client.recv_chat("deploy")
    assert (
        frame["ID"] == body["ID"] and frame["Author"] == "system" and frame["Sent"] == body["Sent"]
    )
    status, body, _ = await call(
        session, api, "POST", "/api/rooms/ops/messages", json={"text": "hi", "author": "ci-bot"}
    )
    assert status == 201 and (await client.recv_chat("hi"))["Author"] == "ci-bot"


async def test_idempotent_retries_are_stored_once(
    api: TestServer, session: aiohttp.ClientSession, backend: Backend
) -> None:
    """The same Idempotency-Key twice stores one row and answers both with its ID."""
    headers = {"Idempotency-Key": "job-42"}
    answers = await asyncio.gather(
        *(
            call(
                session,
                api,
                "POST",
                "/api/rooms/r/messages",
                headers=headers,
                json={"text": "once"},
            )
            for _ in range(3)
        )
    )
    assert {status for status, _b, _r in answers} == {201}
    assert len({body["ID"] for _s, body, _r in answers}) == 1
    assert scalar(backend.db, "select count(*) from messages") == 1
    _s, _b, again = await call(
        session, api, "POST", "/api/rooms/r/messages", headers=headers, json={"text": "once"}
    )
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_broadcast_rooms_users_and_reads(
    api: TestServer, session: aiohttp.ClientSession
) -> None:
    """broadcast posts to every room; rooms, users and messages read back what is there."""
    alice = await ChatClient.connect(session, ws_url(api, room="a"))
    await alice.alias("alice")
    for i in range(5):
        await call(session, api, "POST", "/api/rooms/b/messages", json={"text": f"b{i}"})
    status, body, _ = await call(session, api, "POST", "/api/broadcast", json={"text": "all"})
    assert status == 201 and sorted(m["Room"] for m in body["Messages"]) == ["a", "b"]
    await alice.recv_chat("all")
    status, body, _ = await call(session, api, "GET", "/api/rooms")
    by_room = {r["Room"]: r for r in body["Rooms"]}
    assert by_room["a"]["Messages"] == 1 and by_room["a"]["Live"] == 1
    assert by_room["b"]["Messages"] == 6 and by_room["b"]["Live"] == 0
    assert by_room["b"]["LastID"] > by_room["a"]["LastID"] - 1
    status, body, _ = await call(session, api, "GET", "/api/rooms/a/users")
    assert status == 200 and body["Users"] == ["alice"]
    status, page, _ = await call(session, api, "GET", "/api/rooms/b/messages?limit=2")
    assert [m["Message"] for m in page["Messages"]] == [b64("b4"), b64("all")]
    assert page["Complete"] is False
    first = page["Messages"][0]["ID"]
    status, page, _ = await call(session, api, "GET", "/api/rooms/b/messages?after=0&limit=3")
    assert [m["Message"] for m in page["Messages"]] == [b64(f"b{i}") for i in range(3)]
    assert page["Complete"] is False and page["Reason"] == "limit"
    status, page, _ = await call(
        session, api, "GET", f"/api/rooms/b/messages?after=0&before={first}"
    )
    assert len(page["Messages"]) == 4 and page["Complete"] is True


@pytest.mark.parametrize(
    ("method", "path", "kw", "status"),
    [
        ("POST", "/api/rooms/r/messages", {"data": b"{not json"}, 400),
        ("POST", "/api/rooms/r/messages", {"json": {"text": 5}}, 400),
        ("POST", "/api/rooms/r/messages", {"json": {"text": "x", "extra": 1}}, 400),
        ("POST", "/api/rooms/r/messages", {"json": {"author": "x"}}, 400),
        ("POST", "/api/rooms/r/messages", {"json": {"text": ""}}, 400),
        ("POST", "/api/rooms/r/messages", {"data": b'{"text":"' + b"x" * 70_000 + b'"}'}, 413),
        ("GET", "/api/rooms/r/messages?after=-1", {}, 400),
        ("GET", "/api/nothing/here", {}, 404),
    ],
)
async def test_bad_requests_get_problem_json_and_store_nothing(
    api: TestServer,
    session: aiohttp.ClientSession,
    backend: Backend,
    method: str,
    path: str,
    kw: dict[str, Any],
    status: int,
) -> None:
    """Bad JSON or fields (400), a body over --max-message-bytes (413), an unknown route
    (404): an RFC 9457 problem, and nothing stored."""
    got, body, response = await call(session, api, method, path, **kw)
    assert got == status and body["status"] == status and body["detail"]
    assert response.content_type == "application/problem+json"
    assert scalar(backend.db, "select count(*) from messages") == 0


@pytest.mark.parametrize("header", [None, "Bearer wrong-key-wrong-key", f"Basic {KEY}", KEY])
async def test_no_or_wrong_key_is_401(
    api: TestServer, session: aiohttp.ClientSession, backend: Backend, header: str | None
) -> None:
    """Without the right Bearer key every route answers 401 and nothing is stored."""
    headers = {} if header is None else {"Authorization": header}
    async with session.post(
        url(api, "/api/rooms/r/messages"), json={"text": "x"}, headers=headers
    ) as response:
        assert response.status == 401
        assert response.content_type == "application/problem+json"
        assert KEY not in await response.text()
    assert scalar(backend.db, "select count(*) from messages") == 0


async def test_over_the_rate_is_429(start: Start, session: aiohttp.ClientSession) -> None:
    """Requests past the API's token bucket get 429."""
    server = await start(api_key=KEY, rate=0.01, burst=2)
    statuses = [(await call(session, server, "GET", "/api/rooms"))[0] for _ in range(4)]
    assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429]


async def test_store_failure_is_503_and_nothing_is_stored(
    api: TestServer, session: aiohttp.ClientSession, db_path: Path
) -> None:
    """When the commit fails the answer is 503, not 201."""
    # A trigger makes every insert fail, as a full disk or a broken database would.
    with sqlite3.connect(db_path) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON messages "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    status, body, _ = await call(session, api, "POST", "/api/rooms/r/messages", json={"text": "x"})
    assert status == 503 and "not stored" in body["detail"]
    assert scalar(str(db_path), "select count(*) from messages") == 0


async def test_api_is_off_without_a_key(server: TestServer, session: aiohttp.ClientSession) -> None:
    """With no key configured /api/ does not exist."""
    async with session.get(url(server, "/api/rooms"), headers=AUTH) as response:
        assert response.status == 404


async def test_openapi_document_matches_every_route(
    api: TestServer, session: aiohttp.ClientSession
) -> None:
    """Each API route the server serves is in /api/openapi.json with its method, and each
    documented operation is served; a documented status is what a call answers."""
    async with session.get(url(api, "/api/openapi.json")) as response:
        spec = await response.json()
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in api.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
        and "{tail" not in route.resource.canonical
    }
    documented = {(m, path) for path, ops in spec["paths"].items() for m in ops}
    assert served == documented
    for method, path in documented:
        concrete = path.replace("{room}", "r")
        kw = {"json": {"text": "spec"}} if method == "post" else {}
        status, _b, _r = await call(session, api, method.upper(), concrete, **kw)
        assert str(status) in spec["paths"][path][method]["responses"], (method, path, status)


def test_the_key_is_never_in_the_settings_repr() -> None:
    """A logged Settings object does not show the API key; the key is read from the env."""
    settings = Settings.from_env({"CHATLOG_API_KEY": KEY})
    assert settings.api_key == KEY and KEY not in repr(settings)
    with pytest.raises(SettingsError):
        Settings.from_env({"CHATLOG_API_KEY": "short"})
