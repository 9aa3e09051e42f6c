"""A client that stops reading among 50 active ones: the others' delivery goes on, the slow one
is closed with 1013 within seconds and the server's memory stays bounded."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import psutil

from tests.backends import scalar
from tests.helpers import ServerProcess, eventually
from tests.wsclients import RawClient, b64

CLIENTS = 50
SENDERS = 5
RATE = 300.0  # messages/s in total
SECONDS = 3.0
BODY = "x" * 400


class Reader:
    """An active client: reads every frame and notes each Chat ID and its delivery delay."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids: list[int] = []
        self.delays: list[float] = []

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            if frame.get("Type") == "Chat":
                self.ids.append(frame["ID"])
                self.delays.append(time.time() - float(frame["At"]))


async def send_load(ws: aiohttp.ClientWebSocketResponse, rate: float, seconds: float) -> int:
    loop = asyncio.get_running_loop()
    due, end, n = loop.time(), loop.time() + seconds, 0
    while loop.time() < end:
        await ws.send_str(json.dumps({"Message": b64(BODY), "At": repr(time.time())}))
        n += 1
        due += 1 / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
    return n


async def test_slow_reader_is_closed_and_the_rest_keep_up(tmp_path: Path) -> None:
    """50 readers at 300 msg/s get every message; the stalled one is dropped within seconds."""
    server = ServerProcess(tmp_path / "slow.db", "--send-timeout", "2").start()
    try:
        proc = psutil.Process(server.pid)
        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(server.url) for _ in range(CLIENTS)]
            readers = [Reader(ws) for ws in sockets]
            tasks = [asyncio.create_task(r.run()) for r in readers]
            slow = await RawClient.connect("127.0.0.1", server.port, rcvbuf=4096)
            rss_before = proc.memory_info().rss
            began = time.monotonic()
            rss_peak, closed_after = rss_before, None

            async def watch() -> None:
                nonlocal rss_peak, closed_after
                while closed_after is None or time.monotonic() - began < SECONDS:
                    rss_peak = max(rss_peak, proc.memory_info().rss)
                    if closed_after is None and scalar(
                        server.db, "select count(*) from errors where kind = 'slow-consumer'"
                    ):
                        closed_after = time.monotonic() - began
                    if time.monotonic() - began > 30:
                        return
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch())
            sent = sum(
                await asyncio.gather(
                    *(send_load(ws, RATE / SENDERS, SECONDS) for ws in sockets[:SENDERS])
                )
            )
            await watcher
            for _ in range(400):  # let the healthy readers drain (at most 20 s)
                if all(len(r.ids) >= sent for r in readers):
                    break
                await asyncio.sleep(0.05)
            # The stalled socket goes away although the client never reads: its row is gone
            # and draining it now ends in EOF (or a reset), not a hang.
            await eventually(
                lambda: scalar(server.db, "select count(*) from websocket_connections") == CLIENTS,
                timeout=30,
            )
            dropped_after = time.monotonic() - began
            await slow.eof(timeout=20)
            for ws in sockets:
                await ws.close()
            for task in tasks:
                task.cancel()
        assert closed_after is not None, "the slow client was never closed"
        for reader in readers:
            assert len(reader.ids) == sent
            assert reader.ids == sorted(reader.ids)
        assert scalar(server.db, "select count(*) from messages") == sent
        growth = (rss_peak - rss_before) / 2**20
        assert growth < 64, f"server RSS grew {growth:.1f} MiB"
        delays = sorted(d for r in readers for d in r.delays)
        print(
            f"slow consumer kicked {closed_after:.2f}s and its socket gone {dropped_after:.2f}s "
            f"after the load began; {sent} messages to "
            f"{CLIENTS} readers, delivery p50 {delays[len(delays) // 2] * 1000:.0f} ms, "
            f"p99 {delays[int(len(delays) * 0.99)] * 1000:.0f} ms; server RSS "
            f"{rss_before / 2**20:.0f} MiB -> peak {rss_peak / 2**20:.0f} MiB (+{growth:.1f})"
        )
    finally:
        server.kill()
