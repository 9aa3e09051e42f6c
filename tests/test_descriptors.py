"""Connections are capped below the descriptor limit: serve raises the soft limit, derives
--max-connections from it, answers the crowd with 503, and logs failing accepts once a while."""

from __future__ import annotations

import asyncio
import errno
import logging
from pathlib import Path

import aiohttp
import pytest

from chatlog.server.descriptors import AcceptErrorLog, connection_cap, reserve
from tests.helpers import ServerProcess


def test_the_cap_leaves_room_for_the_database_and_the_listener() -> None:
    """The cap is the configured one, or the descriptors left after the reserve."""
    assert reserve(1024) == 102 and reserve(300) == 100
    assert connection_cap(10_000, 1024) == 922
    assert connection_cap(0, 1024) == 922
    assert connection_cap(100, 1024) == 100


def test_failing_accepts_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """A thousand EMFILE accepts within the interval make one line, not a thousand tracebacks."""
    now = [0.0]
    handler = AcceptErrorLog(every=10.0, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    exc = OSError(errno.EMFILE, "Too many open files")
    context = {"message": "socket.accept() out of system resource", "exception": exc}
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(1000):
                handler(loop, context)
                now[0] += 0.001
            now[0] += 10.0
            handler(loop, context)
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and handler.total == 1001
    assert "accept() failed 1 time(s)" in lines[0] and "Too many open files" in lines[0]
    assert "accept() failed 1000 time(s)" in lines[1]
    assert not any(r.exc_info for r in caplog.records)


async def test_a_crowd_beyond_the_descriptor_limit_gets_503(tmp_path: Path) -> None:
    """Under a 300-descriptor limit the cap is 200: socket 201 gets 503, no EMFILE is logged."""
    server = ServerProcess(tmp_path / "fd.db", prefix=("prlimit", "--nofile=300:300", "--"))
    server.start()
    try:
        assert "max-connections is 200: the open-file limit is 300" in server.output()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            sockets = [await session.ws_connect(server.url) for _ in range(200)]
            await sockets[0].send_str('{"History": {}}')  # the database pool opens too
            await sockets[0].receive(timeout=10)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(server.url)
            assert refused.value.status == 503
            async with session.get(
                server.url.replace("ws://", "http://"),
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
            ) as response:
                assert response.status == 503
                assert "the server is at its limit of 200 connections" in await response.text()
            for ws in sockets:
                await ws.close()
            for _ in range(100):  # the slots come back as the sessions end
                try:
                    again = await session.ws_connect(server.url)
                    break
                except aiohttp.WSServerHandshakeError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("no slot came back after every socket closed")
            await again.close()
        assert "Too many open files" not in server.output()
    finally:
        server.kill()
