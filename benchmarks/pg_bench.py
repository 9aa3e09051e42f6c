"""Scale-out cost: deliveries/s and latency on SQLite vs one and two PostgreSQL-backed servers.

Every configuration runs in the same invocation, on the same machine, with the same load:
``--clients`` WebSocket clients in one room (spread round-robin over the servers), of which
``--senders`` send. Two phases per configuration:

* burst: the senders push ``--messages`` messages as fast as they can; deliveries/s is
  messages x clients over the time from the first send to the last delivery;
* paced: ``--rate`` messages/s for ``--seconds``; p50/p99 latency from send to delivery
  (each frame carries its send time in an extra key, which the server relays as received).

    CHATLOG_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/pg_bench.py --clients 20 --senders 4 --messages 4000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.pgsupport import ENV, fresh_database
from tests.servers import ServerProcess

BODY = base64.b64encode(b"hello from the scale-out benchmark").decode()


@contextlib.asynccontextmanager
async def servers(db: str, count: int) -> AsyncIterator[list[str]]:
    procs = [ServerProcess(db) for _ in range(count)]
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start, 60.0) for p in procs))
        yield [f"{p.url}?room=bench" for p in procs]
    finally:
        for p in procs:
            p.__exit__()


class Receiver:
    """One client: counts Chat frames and records send-to-delivery latency."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.count = 0
        self.latencies: list[float] = []
        self.last_at = 0.0
        self.target = 0
        self.done = asyncio.Event()

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT or '"Chat"' not in msg.data:
                continue
            now = time.perf_counter()
            frame = json.loads(msg.data)
            self.latencies.append(now - frame["T"])
            self.count += 1
            self.last_at = now
            if self.count >= self.target:
                self.done.set()

    def expect(self, more: int) -> None:
        self.target = self.count + more
        self.latencies = []
        self.done.clear()


async def send(ws: aiohttp.ClientWebSocketResponse, n: int, gap: float) -> None:
    start = time.perf_counter()
    for i in range(n):
        if gap:
            # Pace against the clock, not by sleeping a fixed gap (sleeps drift late).
            delay = start + i * gap - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        frame = {"Message": BODY, "Author": "bench", "T": time.perf_counter()}
        await ws.send_str(json.dumps(frame))


async def measure(urls: list[str], args: argparse.Namespace) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        sockets = [
            await session.ws_connect(urls[i % len(urls)], max_msg_size=0)
            for i in range(args.clients)
        ]
        receivers = [Receiver(ws) for ws in sockets]
        tasks = [asyncio.create_task(r.run()) for r in receivers]
        # Spread the senders over the servers too (round-robin order above does that).
        senders = sockets[: args.senders]
        per_sender = args.messages // args.senders
        total = per_sender * args.senders
        try:
            await asyncio.sleep(0.5)  # greetings done
            for r in receivers:
                r.expect(total)
            started = time.perf_counter()
            await asyncio.gather(*(send(ws, per_sender, 0.0) for ws in senders))
            await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in receivers)), 120)
            elapsed = max(r.last_at for r in receivers) - started
            burst = total * len(receivers) / elapsed

            paced_n = int(args.rate * args.seconds) // args.senders
            for r in receivers:
                r.expect(paced_n * args.senders)
            gap = args.senders / args.rate
            await asyncio.gather(*(send(ws, paced_n, gap) for ws in senders))
            await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in receivers)), 120)
            lat = sorted(x for r in receivers for x in r.latencies)
        finally:
            for ws in sockets:
                await ws.close()
            for task in tasks:
                task.cancel()
    return {
        "deliveries_s": burst,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
    }


async def main(args: argparse.Namespace) -> None:
    pg = os.environ.get(ENV)
    if not pg:
        sys.exit(f"set {ENV}, e.g. postgresql://postgres@127.0.0.1:5432/test")
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            configs = {
                "sqlite, 1 server": await stack.enter_async_context(
                    servers(str(Path(tmp) / "bench.db"), 1)
                )
            }
            for count in (1, 2):
                db = await stack.enter_async_context(fresh_database(pg))
                name = f"postgresql, {count} server{'s' * (count > 1)}"
                configs[name] = await stack.enter_async_context(servers(db, count))
            # Interleave the configurations and take medians: the machine's noise hits all.
            for _ in range(args.repeat):
                for name, urls in configs.items():
                    runs.setdefault(name, []).append(await measure(urls, args))
    print(
        f"\n{args.clients} clients in one room, {args.senders} senders; burst of "
        f"{args.messages} messages; paced {args.rate:g} msg/s for {args.seconds:g} s; "
        f"median of {args.repeat} interleaved runs\n"
    )
    results = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    base = results["sqlite, 1 server"]
    print(f"{'configuration':<24}{'deliveries/s':>14}{'vs SQLite':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name, r in results.items():
        ratio = r["deliveries_s"] / base["deliveries_s"]
        print(
            f"{name:<24}{r['deliveries_s']:>14,.0f}{ratio:>10.2f}x"
            f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--messages", type=int, default=4000, help="burst size")
    parser.add_argument("--rate", type=float, default=200.0, help="paced messages/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="paced phase length")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per config")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
