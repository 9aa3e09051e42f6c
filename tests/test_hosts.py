"""DNS rebinding: only Host names on the allowlist are served, and a same-origin handshake must
match scheme, host and port."""

from __future__ import annotations

import aiohttp
import pytest

from chatlog.server.hosts import HostAllowlist, host_name
from tests.helpers import Start

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
KEY = {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def test_host_names_and_the_default_allowlist() -> None:
    """IP literals, localhost, --host and listed names (with subdomains) pass; others fail."""
    assert host_name("Chat.Example.COM.:8080") == "chat.example.com"
    assert host_name("[::1]:80") == "[::1]"
    hosts = HostAllowlist("0.0.0.0", ["chat.example.com", ".corp.example"])
    for ok in ("127.0.0.1:8080", "[::1]", "10.1.2.3", "localhost:80", "chat.example.com"):
        assert hosts.allows(ok), ok
    assert hosts.allows("a.corp.example") and hosts.allows("corp.example")
    for bad in ("evil.example", "chat.example.com.evil.example", "xcorp.example", "", None):
        assert not hosts.allows(bad), bad


@pytest.mark.parametrize("path", ["/ws", "/", "/metrics"])
async def test_a_rebound_host_name_is_refused_with_403(start: Start, path: str) -> None:
    """Origin http://evil.example with Host evil.example gets 403 naming the host."""
    server = await start()
    url = f"http://127.0.0.1:{server.port}{path}"
    headers = {"Host": "evil.example", "Origin": "http://evil.example", **UPGRADE, **KEY}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert response.status == 403
        text = await response.text()
        assert "host 'evil.example' is not served here" in text
        assert "--allowed-host evil.example" in text


async def test_an_allowed_host_is_served_and_its_origin_connects(start: Start) -> None:
    """With --allowed-host chat.example the page and a same-origin handshake work."""
    server = await start(allowed_hosts=("chat.example",))
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/", headers={"Host": "chat.example"}) as page:
            assert page.status == 200
        headers = {
            "Host": f"chat.example:{server.port}",
            "Origin": f"http://chat.example:{server.port}",
        }
        async with session.ws_connect(f"{base}/ws", headers=headers) as ws:
            assert (await ws.receive_json(timeout=10))["Type"] == "Status"


async def test_the_origin_scheme_must_match(start: Start) -> None:
    """An https Origin for a plain-http request of the same host and port is refused."""
    server = await start()
    url = f"http://127.0.0.1:{server.port}/ws"
    origin = {"Origin": f"https://127.0.0.1:{server.port}", **UPGRADE, **KEY}
    async with aiohttp.ClientSession() as session, session.get(url, headers=origin) as response:
        assert response.status == 403
        assert "origin" in (await response.text())
