"""Rows another process writes into a served SQLite file: delivery latency, idle CPU, and
two `chatlog serve` processes on one file against one.

* latency: a plain sqlite3 connection in this process (a foreign writer, as `chatlog
  broadcast` is) commits one row at a time with idle gaps; a WebSocket client of the server
  times commit-to-receipt on the same clock;
* idle CPU: the server's CPU seconds over a quiet period with one socket open, for the code
  in --before (e.g. /work/main, no watcher) and this checkout, in alternating pairs;
* bench: `chatlog bench --url A [--also-url B]` against one process and two on one file,
  clients split round-robin, in alternating pairs.

    .venv/bin/python benchmarks/foreign_bench.py --before /work/main --pairs 2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
from tests.helpers import ServerProcess  # noqa: E402

BODY = base64.b64encode(b"from another process").decode()
RAW = json.dumps({"Message": BODY, "Author": "system"})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def latency(db: Path, count: int) -> dict[str, float]:
    with ServerProcess(db) as server:
        writer = sqlite3.connect(db, isolation_level=None, timeout=5)
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(server.url)
            await ws.receive()  # Status
            await ws.receive()  # userlist
            samples: list[float] = []
            for _ in range(count):
                await asyncio.sleep(0.02 + (time.monotonic_ns() % 60) / 1000)
                writer.execute("BEGIN IMMEDIATE")
                writer.execute(
                    "INSERT INTO messages (room, ws_id, author, message, text, raw, sent_at) "
                    "VALUES ('main', '', 'system', ?, 'from another process', ?, "
                    "strftime('%Y-%m-%d %H:%M:%f', 'now'))",
                    (BODY, RAW),
                )
                writer.execute("COMMIT")
                committed = time.perf_counter()
                msg = await ws.receive(timeout=5)
                samples.append((time.perf_counter() - committed) * 1000)
                assert json.loads(msg.data)["Type"] == "Chat"
            await ws.close()
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(percentile(samples, 0.99), 2),
        "max_ms": round(max(samples), 2),
        "n": count,
    }


async def idle_cpu(db: Path, code: Path, seconds: float) -> float:
    env = {"PYTHONPATH": str(code)}
    with ServerProcess(db, env=env) as server:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(server.url)
            await asyncio.sleep(1.0)
            before = cpu_seconds(server.pid)
            await asyncio.sleep(seconds)
            used = cpu_seconds(server.pid) - before
            await ws.close()
    return round(100 * used / seconds, 3)


def bench(db: Path, processes: int, clients: int, senders: int, duration: float) -> dict[str, Any]:
    servers = [ServerProcess(db, log=db.with_suffix(f".{i}.log")) for i in range(processes)]
    try:
        for server in servers:
            server.start()
        args = [sys.executable, "-m", "chatlog", "bench", "--url", servers[0].url]
        for other in servers[1:]:
            args += ["--also-url", other.url]
        args += ["--clients", str(clients), "--senders", str(senders)]
        args += ["--duration", str(duration), "--json"]
        done = subprocess.run(args, capture_output=True, text=True, check=True)
        r = json.loads(done.stdout)["results"]["target"]
        return {
            "msgs_per_s": round(r["msgs_per_s"]),
            "deliveries_per_s": round(r["deliveries_per_s"]),
            "p50_ms": round(r["latency_ms"]["p50"], 2),
            "p99_ms": round(r["latency_ms"]["p99"], 2),
            "lost_dup_ooo": (r["lost"], r["duplicates"], r["out_of_order"]),
        }
    finally:
        for server in servers:
            server.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, default=Path("/work/main"))
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="foreign-bench-"))
    n = 0

    def fresh() -> Path:
        nonlocal n
        n += 1
        path = tmp / f"log{n}.db"
        subprocess.run(
            [sys.executable, "-m", "chatlog", "db", "upgrade", "--db", str(path)],
            check=True,
            capture_output=True,
        )
        return path

    report: dict[str, Any] = {"latency": await latency(fresh(), opts.count)}
    cpu: dict[str, list[float]] = {"before": [], "after": []}
    one_two: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}
    for _ in range(opts.pairs):
        cpu["before"].append(await idle_cpu(fresh(), opts.before, opts.idle))
        cpu["after"].append(await idle_cpu(fresh(), HERE, opts.idle))
        one_two["one"].append(bench(fresh(), 1, opts.clients, opts.senders, opts.duration))
        one_two["two"].append(bench(fresh(), 2, opts.clients, opts.senders, opts.duration))
    report["idle_cpu_percent"] = cpu
    report["bench"] = one_two
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
