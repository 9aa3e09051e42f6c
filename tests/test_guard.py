"""Who may connect and speak: Origin allowlist, signed tokens, caps, rate limit, heartbeats."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from chatlog.server import auth
from chatlog.server.guard import RedactingAccessLogger, normalize_origin
from chatlog.server.keys import GUARD
from chatlog.server.limits import (
    ConnectionLimiter,
    LimitExceeded,
    RateLimiter,
    TokenBucket,
    Verdict,
)
from chatlog.settings import Settings
from tests.backends import rows, scalar
from tests.helpers import ServerProcess, Start, eventually, run_cli
from tests.wsclients import CLOSE, PING, ChatClient, RawClient, b64, ws_url

# Handshake guards, tokens and limits act before the log is touched: SQLite is enough.
pytestmark = pytest.mark.backends("sqlite")

SECRET = "test-secret-0123456789abcdef"


async def open_client(
    session: aiohttp.ClientSession,
    server: TestServer,
    *,
    headers: dict[str, str] | None = None,
    **query: Any,
) -> ChatClient:
    """A ChatClient past Status and userlist, or ``WSServerHandshakeError`` when refused."""
    return await ChatClient.connect(session, ws_url(server, **query), headers=headers or {})


async def refused_status(
    session: aiohttp.ClientSession,
    server: TestServer,
    *,
    headers: dict[str, str] | None = None,
    **query: Any,
) -> int:
    """The HTTP status of a handshake the server refuses (0 if it was accepted)."""
    try:
        ws = await session.ws_connect(ws_url(server, **query), headers=headers or {})
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 0


# --- pure rules ------------------------------------------------------------------------------


def test_token_round_trip_and_refusals() -> None:
    """A token verifies with its secret only, until it expires, and refuses tampering."""
    token = auth.issue(SECRET, "alice", room="lobby", ttl=60, now=1000)
    assert auth.verify(SECRET, token, now=1059) == auth.Token("alice", "lobby", 1060)
    with pytest.raises(auth.AuthError, match="expired"):
        auth.verify(SECRET, token, now=1060)
    with pytest.raises(auth.AuthError, match="signature"):
        auth.verify("another-secret-0123456789", token, now=1000)
    version, payload, sig = token.split(".")
    forged = auth.issue(SECRET, "mallory", room="lobby", ttl=60, now=1000).split(".")[1]
    with pytest.raises(auth.AuthError, match="signature"):
        auth.verify(SECRET, f"{version}.{forged}.{sig}", now=1000)
    for junk in ("", "v1", "v1..", "v2.a.b", "x" * 5000, f"{version}.{payload}"):
        with pytest.raises(auth.AuthError):
            auth.verify(SECRET, junk, now=1000)
    assert [auth.parse_ttl(t) for t in ("90s", "15m", "1h", "7d")] == [
        90,
        900,
        3600,
        604800,
    ]


def test_token_bucket_and_flood_verdicts() -> None:
    """The bucket allows `burst` at once then `rate`/s; sustained refusals turn into CLOSE."""
    now = [0.0]
    limiter = RateLimiter(10, 5, flood_refusals=3, flood_window=10, clock=lambda: now[0])
    assert [limiter.check() for _ in range(7)] == [Verdict.ACCEPT] * 5 + [Verdict.REFUSE] * 2
    now[0] += 0.1  # one token back
    assert limiter.check() is Verdict.ACCEPT
    assert limiter.check() is Verdict.CLOSE
    assert TokenBucket(0, 1).take() and all(TokenBucket(0, 1).take() for _ in range(1000))


def test_connection_limiter_counts_per_address() -> None:
    """Per-address cap answers 429, the total cap 503, and release frees the slot."""
    caps = ConnectionLimiter(total=3, per_address=2)
    caps.acquire("a")
    caps.acquire("a")
    with pytest.raises(LimitExceeded) as per_ip:
        caps.acquire("a")
    caps.acquire("b")
    with pytest.raises(LimitExceeded) as total:
        caps.acquire("c")
    assert (per_ip.value.status, total.value.status) == (429, 503)
    caps.release("a")
    caps.acquire("c")
    assert caps.open == 3 and caps.count("a") == 1


# --- Origin ------------------------------------------------------------------------------------

REFUSED_ORIGINS = [
    "null",
    "http://evil.test",
    "https://example.com.evil.test",
    "https://chat.example.com.evil.test",
    "https://evil.test/https://chat.example.com",
    "http://chat.example.com",  # scheme variant of the allowed origin
    "https://chat.example.com:8443",  # port variant
    "https://user@chat.example.com",
    "file://",
    "chat.example.com",
    "http://127.0.0.2:{port}",  # another host on the same port
    "http://127.0.0.1:1",  # this host, another port
]


async def test_origins_not_allowed_get_403_before_upgrade(
    start: Start, session: aiohttp.ClientSession, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every Origin off the allowlist is refused with 403 and logged; no connection row."""
    server = await start(allowed_origins=("https://chat.example.com",))
    caplog.set_level(logging.WARNING, "chatlog.server.guard")
    for origin in REFUSED_ORIGINS:
        origin = origin.format(port=server.port)
        assert await refused_status(session, server, headers={"Origin": origin}) == 403, origin
    assert scalar(db_path, "select count(*) from websocket_connections") == 0
    logged = [r.getMessage() for r in caplog.records if "refused handshake" in r.getMessage()]
    assert len(logged) == len(REFUSED_ORIGINS) and all("403" in line for line in logged)


async def test_own_listed_and_absent_origins_connect(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """No Origin (tools), the server's own origin and a listed origin (any case) connect."""
    server = await start(allowed_origins=("https://chat.example.com",))
    for headers in (
        {},
        {"Origin": f"http://127.0.0.1:{server.port}"},
        {"Origin": "https://chat.example.com"},
        {"Origin": "https://CHAT.Example.com:443"},
    ):
        client = await open_client(session, server, headers=headers)
        await client.close()
    assert normalize_origin("HTTPS://A.example:443/") == "https://a.example"


async def test_allowed_origin_flag_and_env(tmp_path: Path) -> None:
    """`--allowed-origin` repeats and CHATLOG_ALLOWED_ORIGIN takes a comma-separated list."""
    env = {"CHATLOG_ALLOWED_ORIGIN": "https://a.example, https://b.example"}
    assert Settings.from_env(env).allowed_origins == ("https://a.example", "https://b.example")
    result = run_cli("serve", "--help")
    assert "--allowed-origin" in result.output and "--auth-secret" in result.output


# --- tokens ------------------------------------------------------------------------------------


async def test_missing_expired_forged_tokens_get_401(
    start: Start, session: aiohttp.ClientSession, db_path: Path
) -> None:
    """With auth on, no upgrade happens without a genuine unexpired token."""
    server = await start(auth_secret=SECRET)
    good = auth.issue(SECRET, "alice")
    bad = {
        "missing": {},
        "expired": {"token": auth.issue(SECRET, "alice", ttl=1, now=time.time() - 10)},
        "forged": {"token": auth.issue("some-other-secret-123456", "alice")},
        "truncated": {"token": good[:-3]},
        "garbage": {"token": "not a token"},
    }
    for name, query in bad.items():
        assert await refused_status(session, server, **query) == 401, name
    bearer = {"Authorization": "Bearer " + auth.issue("some-other-secret-123456", "bob")}
    assert await refused_status(session, server, headers=bearer) == 401
    assert scalar(db_path, "select count(*) from websocket_connections") == 0


async def test_token_user_is_the_alias_and_cannot_be_changed(
    start: Start, session: aiohttp.ClientSession, db_path: Path
) -> None:
    """The token's user is listed at connect, authors every message, and renames are refused."""
    server = await start(auth_secret=SECRET)
    alice = await open_client(session, server, token=auth.issue(SECRET, "alice"))
    assert alice.users == [{"User": "alice"}]
    bearer = {"Authorization": f"Bearer {auth.issue(SECRET, 'bob')}"}
    bob = await open_client(session, server, headers=bearer)
    await alice.until_users("alice", "bob")
    await bob.ws.send_str(json.dumps({"User": "alice"}))
    assert (await bob.recv("Error"))["Code"] == "alias-locked"
    await bob.say("hi", Author="alice")
    assert (await alice.recv("Chat"))["Author"] == "bob"
    assert rows(db_path, "select author from messages") == [("bob",)]
    assert rows(db_path, "select alias from users order by alias") == [("alice",), ("bob",)]
    assert rows(db_path, "select kind from errors") == [("alias-locked",)]


async def test_room_token_cannot_reach_another_room(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A token for one room opens no socket, resume or history anywhere else (403)."""
    server = await start(auth_secret=SECRET)
    anywhere = await open_client(session, server, room="b", token=auth.issue(SECRET, "root"))
    await anywhere.say("secret in b")
    await anywhere.recv("Chat")
    only_a = auth.issue(SECRET, "ann", room="a")
    assert await refused_status(session, server, room="b", token=only_a) == 403
    assert await refused_status(session, server, room="b", since=0, token=only_a) == 403
    assert await refused_status(session, server, token=only_a) == 403  # default room "main"
    ann = await open_client(session, server, room="a", since=0, token=only_a)
    resumed = await ann.recv("Resumed")
    await ann.ws.send_str(json.dumps({"History": {"Limit": 100}}))
    history = await ann.recv("History")
    assert resumed["To"] == 0 and history["Messages"] == []
    assert not [f for f in ann.seen if f.get("Type") == "Chat"]


async def test_tokens_never_reach_the_logs(tmp_path: Path) -> None:
    """A real `chatlog serve` logs refusals and connections without any token text."""
    secret = "subprocess-secret-0123456789"
    tokens = [
        auth.issue(secret, "alice"),
        auth.issue(secret, "alice", ttl=1, now=time.time() - 5),
        auth.issue("wrong-secret-0123456789abc", "eve"),
    ]
    server = ServerProcess(tmp_path / "log.db", "--auth-secret", secret).start()
    try:
        async with aiohttp.ClientSession() as session:
            for token in tokens:
                for query in (True, False):
                    url = f"{server.url}?token={token}" if query else server.url
                    headers = {} if query else {"Authorization": f"Bearer {token}"}
                    try:
                        ws = await session.ws_connect(url, headers=headers)
                        await ws.send_str(json.dumps({"Message": b64("hello")}))
                        await ws.receive(timeout=5)
                        await ws.close()
                    except aiohttp.WSServerHandshakeError as exc:
                        assert exc.status == 401
    finally:
        server.kill()
    assert server.proc is not None
    logged = server.output()
    assert "refused handshake" in logged
    for token in tokens:
        for part in token.split("."):
            if len(part) > 8:
                assert part not in logged


async def test_access_log_drops_the_query_string(
    start: Start, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The access logger `serve` installs logs method and path, never `?token=`."""
    caplog.set_level(logging.INFO, "aiohttp.access")
    server = await start({"access_log_class": RedactingAccessLogger}, auth_secret=SECRET)
    token = auth.issue(SECRET, "alice")
    client = await open_client(session, server, token=token)
    await client.close()
    await refused_status(session, server, token=token + "x")
    await asyncio.sleep(0.1)
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any('"GET /ws"' in line for line in lines)
    assert not [line for line in lines if "token" in line or token[-20:] in line]


# --- caps, rate, heartbeat, handshake deadline -------------------------------------------------


async def test_connection_caps_refuse_before_upgrade(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """Past the per-address cap handshakes get 429, past the total cap 503; closing frees."""
    server = await start(max_connections=3, max_connections_per_ip=2)
    first = [await open_client(session, server) for _ in range(2)]
    assert await refused_status(session, server) == 429
    await first[0].close()
    guard = server.app[GUARD]
    await eventually(lambda: guard.limiter.open == 1)
    replacement = await open_client(session, server)
    await replacement.say("still fine")
    await replacement.recv("Chat")
    guard.limiter.per_address = 0  # now only the total cap of 3 applies
    await open_client(session, server)
    assert await refused_status(session, server) == 503
    assert guard.refused == {429: 1, 503: 1}


async def test_rate_limit_refuses_excess_and_closes_a_flooder(
    start: Start, session: aiohttp.ClientSession, db_path: Path
) -> None:
    """Frames past the bucket get `rate-limited` and no row; a sustained flood closes 1008."""
    server = await start(rate=5, burst=10)
    flooder, other = await open_client(session, server), await open_client(session, server)
    sent = 0
    for i in range(400):  # 10x and more over the quota, as fast as the socket takes it
        if flooder.ws.closed:
            break
        await flooder.say(f"flood {i}")
        sent += 1
    refused = 0
    async with asyncio.timeout(10):
        async for msg in flooder.ws:
            refused += msg.type is aiohttp.WSMsgType.TEXT and "rate-limited" in msg.data
    assert flooder.ws.close_code == 1008
    stored = scalar(db_path, "select count(*) from messages")
    assert refused >= 90 and 10 <= stored <= 15 and stored + refused <= sent
    assert rows(db_path, "select kind from errors") == [("flood",)]
    await other.say("unaffected")
    await other.recv_chat("unaffected")


async def test_rate_zero_turns_the_limit_off(
    start: Start, session: aiohttp.ClientSession, db_path: Path
) -> None:
    """With rate 0 a burst far past the default quota is stored in full."""
    server = await start(rate=0)
    client = await open_client(session, server)
    for i in range(400):
        await client.say(f"m{i}")
    await client.recv_chat("m399")
    assert scalar(db_path, "select count(*) from messages") == 400
    assert not [f for f in client.seen if f.get("Type") == "Error"]


async def test_heartbeat_closes_a_peer_that_never_answers(
    start: Start, session: aiohttp.ClientSession, db_path: Path
) -> None:
    """A peer that completes the handshake and then ignores pings is closed and its rows go."""
    server = await start(heartbeat=0.5)
    dead = await RawClient.connect("127.0.0.1", server.port)
    alive = await open_client(session, server)
    # aiohttp's client answers pings while the application reads: keep reading.
    heard: list[str] = []
    reading = asyncio.create_task(_read_all(alive.ws, heard))
    # The connection row is queued behind the greeting, not awaited before it.
    await eventually(lambda: scalar(db_path, "select count(*) from websocket_connections") == 2)
    began = time.monotonic()
    pinged = False
    async with asyncio.timeout(10):
        while (got := await dead.read_frame()) is not None and got.opcode != CLOSE:
            pinged = pinged or got.opcode == PING
        await dead.eof()
    took = time.monotonic() - began
    assert pinged
    await eventually(lambda: scalar(db_path, "select count(*) from websocket_connections") == 1)
    # (The errors row "No PONG received" is written under `serve`; aiohttp's TestServer
    # cancels the handler as the socket drops, so it is not asserted here.)
    await asyncio.sleep(1.2)  # two more heartbeat periods: the live client stays
    await alive.say("still here")
    await eventually(lambda: any(b64("still here") in text for text in heard))
    reading.cancel()
    print(f"dead peer closed {took:.2f}s after the handshake (heartbeat 0.5s)")


async def _read_all(ws: aiohttp.ClientWebSocketResponse, into: list[str]) -> None:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            into.append(msg.data)


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed this connection: an orderly end of stream, or a reset.

    A server that closes a socket with bytes still unread in its kernel buffer sends RST, not
    FIN; both mean the request was dropped. Any bytes instead (a response) mean it was not.
    """
    try:
        return await reader.read(100) == b""
    except ConnectionResetError:
        return True


async def test_handshake_deadline_drops_slow_headers_not_sockets(tmp_path: Path) -> None:
    """`serve --handshake-timeout 1`: trickled and idle requests are dropped, live sockets stay."""
    server = ServerProcess(tmp_path / "slow.db", "--handshake-timeout", "1").start()
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(server.url)
            # 200 connections that never finish (or never start) their request...
            idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(200)]
            for n, (_, idle_writer) in enumerate(idle):
                idle_writer.write(b"GET /ws HTTP/1.1\r\n" if n % 2 else b"")
            idle_began = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            began = time.monotonic()
            closed_after = None
            for i in range(40):  # one header byte every 0.1 s, never the blank line
                writer.write(b"X-Slow: %d\r\n" % i)
                try:
                    await writer.drain()
                    if await asyncio.wait_for(_closed_by_server(reader), 0.1):
                        closed_after = time.monotonic() - began
                        break
                except TimeoutError:
                    continue
                except ConnectionError:  # the write itself found the connection gone
                    closed_after = time.monotonic() - began
                    break
            writer.close()
            assert closed_after is not None, "the slow request was never dropped"
            await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - began)))
            await ws.send_str(json.dumps({"Message": b64("after the deadline")}))
            async with asyncio.timeout(5):
                while b64("after the deadline") not in await ws.receive_str():
                    pass
            # ...are all closed by the server too.
            async with asyncio.timeout(10):
                for idle_reader, _ in idle:
                    assert await _closed_by_server(idle_reader)
            idle_closed = time.monotonic() - idle_began
            for _, idle_writer in idle:
                idle_writer.close()
            print(
                f"slow request dropped after {closed_after:.2f}s, 200 idle connections all "
                f"closed within {idle_closed:.2f}s (deadline 1s)"
            )
            await ws.close()
    finally:
        server.kill()
