"""Limits that hold across reconnects: frame rates per network and per token user, a
connection rate per network, address caps per network, and pings counted like frames."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from chatlog.server.keys import GUARD
from chatlog.server.quotas import Buckets, network
from tests.backends import scalar
from tests.helpers import Start
from tests.wsclients import CLOSE, PING, PONG, ChatClient, RawClient, frame, ws_url


@pytest.mark.parametrize(
    "address, net",
    [
        ("203.0.113.7", "203.0.113.0/24"),
        ("127.0.0.2", "127.0.0.0/24"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.9", "198.51.100.0/24"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unknown", "unknown"),
    ],
)
def test_addresses_count_per_network(address: str, net: str) -> None:
    """IPv4 addresses count per /24, IPv6 per /64, mapped IPv4 as IPv4."""
    assert network(address) == net


def test_shared_buckets_outlive_users_and_are_bounded() -> None:
    """A key's bucket stays empty for whoever uses the key next; the table keeps N keys."""
    now = [0.0]
    buckets = Buckets(1.0, 3, max_keys=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(4)] == [True, True, True, False]
    assert not buckets.take("a")  # a "reconnect" gets no fresh burst
    now[0] += 1.0
    assert buckets.take("a") and not buckets.take("a")
    buckets.take("b")
    buckets.take("c")
    assert len(buckets) == 2


async def test_reconnecting_does_not_reset_the_rate(start: Start) -> None:
    """A client reconnecting in a loop stores no more than the network's burst and rate."""
    server = await start(rate=1000, burst=1000, network_rate=5, network_burst=20)
    url = ws_url(server, room="loop")
    loop = asyncio.get_running_loop()
    began, sent, refused = loop.time(), 0, 0
    async with aiohttp.ClientSession() as session:
        for _ in range(10):
            async with session.ws_connect(url) as ws:
                client = ChatClient(ws)
                for i in range(10):
                    await client.say(f"m{sent} {i}")
                    sent += 1
                answers = 0
                while answers < 10:  # each frame gets its Chat echo or an Error
                    kind = (await client.next()).get("Type")
                    answers += kind in ("Chat", "Error")
                    refused += kind == "Error"
    elapsed = loop.time() - began
    stored = scalar(server.app[GUARD].settings.db, "select count(*) from messages")
    assert sent == 100 and stored + refused == sent
    assert stored <= 20 + 5 * elapsed + 1, f"{stored} stored in {elapsed:.1f}s"


async def test_new_connections_per_network_are_rate_limited(start: Start) -> None:
    """Beyond --connect-burst new handshakes from a network get 429 with the reason."""
    server = await start(rate=50, connect_rate=0.1, connect_burst=3)
    url = ws_url(server).replace("ws://", "http://")
    headers = {"Upgrade": "websocket", "Connection": "Upgrade"}
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.ws_connect(ws_url(server)):
                pass
        async with session.get(url, headers=headers) as response:
            assert response.status == 429
            assert "too many new connections from 127.0.0.0/24" in await response.text()


async def test_the_address_cap_counts_a_whole_network(start: Start) -> None:
    """127.0.0.2 and 127.0.0.3 share 127.0.0.0/24's cap; with a /32 prefix they do not."""
    capped = await start(max_connections_per_ip=1)
    wide = await start(max_connections_per_ip=1, ipv4_prefix=32)
    for server, third_status in ((capped, 429), (wide, 101)):
        first = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
        second = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0)))
        try:
            ws = await first.ws_connect(ws_url(server))
            try:
                async with second.ws_connect(ws_url(server)):
                    status = 101
            except aiohttp.WSServerHandshakeError as exc:
                status = exc.status
            assert status == third_status
            await ws.close()
        finally:
            await first.close()
            await second.close()


async def test_pings_count_against_the_rate_and_a_ping_flood_is_closed(start: Start) -> None:
    """300 pings at once: only a burst is answered, and the connection is closed 1008."""
    server = await start(rate=10, burst=10)
    raw = await RawClient.connect("127.0.0.1", server.port)
    await raw.send(b"".join(frame(PING, b"p") for _ in range(300)))
    pongs, code = 0, None
    while True:
        got = await raw.read_frame()
        if got is None:
            break
        if got.opcode == PONG:
            pongs += 1
        if got.opcode == CLOSE:
            code = got.close_code
            break
    raw.close()
    assert 10 <= pongs < 30, pongs
    assert code == 1008
