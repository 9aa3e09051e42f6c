"""Server memory and an honest client's round trip under abuse, bounded in time and count.

Builds a log of 2,000 messages of about 4 KiB in room ``main``, serves it with a real
``chatlog serve`` subprocess on loopback, and runs, each for ``--seconds``:

* ``history``: 8 slow readers (8 KiB receive window, reading 16 KiB every 10 ms) each asking
  ``{"History":{"Limit":500}}`` (2 MB) 4 times a second;
* ``resume``: 8 handshakes with ``?since=0`` (an 8 MB backlog) that never read, each
  reconnecting every 6 s (the server drops a stalled socket after ``--send-timeout`` 5 s).

Before each attack the honest client's round trip (a chat line to its own echo, 20/s) is
measured alone, then during the attack; the server's RSS is sampled every 50 ms, idle before,
peak during and 5 s after the attackers leave. ``ABUSE_KINDS=history`` runs one attack;
``ABUSE_PATH=/ws?room=other`` sends the History flood to another (empty) room. ``--code DIR``
serves another checkout (e.g. the main branch) for a before/after comparison in the same run;
an attack stops early when RSS passes ``--rss-cap`` MiB.

    python benchmarks/abuse_bench.py --seconds 10 --code /work/main --code .
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import ServerProcess
from tests.wsclients import RawClient

ATTACKERS = 8
ROWS = 2000
TEXT = "b" * 3000


def build(path: Path, code: Path) -> None:
    """A migrated log with ``ROWS`` messages of about 4 KiB in room ``main``."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run(
        [sys.executable, "-m", "chatlog", "db", "upgrade", "--db", str(path)],
        check=True,
        capture_output=True,
        env=env,
        cwd=code,
    )
    body = base64.b64encode(TEXT.encode()).decode()
    raw = json.dumps({"Message": body, "Author": "bench"})
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "insert into messages (room, ws_id, author, message, text, raw, sent_at) "
            "values ('main', 'bench', 'bench', ?, ?, ?, '2026-11-25 12:00:00.000000')",
            ((body, TEXT, raw) for _ in range(ROWS)),
        )


class Rss:
    """Samples a process's RSS every 50 ms while running."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0

    def now(self) -> int:
        return int(self.proc.memory_info().rss)

    async def watch(self, stop: asyncio.Event, cap: int) -> None:
        while not stop.is_set():
            self.peak = max(self.peak, self.now())
            if self.peak > cap:
                stop.set()
            await asyncio.sleep(0.05)


async def honest(url: str, stop: asyncio.Event, rate: float = 20.0) -> list[float]:
    """Round trips (ms) of one client chatting in ``main`` until ``stop``."""
    times: list[float] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        n = 0
        while not stop.is_set():
            text = base64.b64encode(f"honest {n}".encode()).decode()
            began = time.perf_counter()
            await ws.send_str(json.dumps({"Message": text}))
            try:
                async with asyncio.timeout(10):
                    while True:
                        msg = await ws.receive()
                        if msg.type is not aiohttp.WSMsgType.TEXT:
                            return times
                        frame = json.loads(msg.data)
                        if frame.get("Type") == "Chat" and frame.get("Message") == text:
                            break
            except TimeoutError:
                pass
            times.append((time.perf_counter() - began) * 1000)
            n += 1
            await asyncio.sleep(1 / rate)
    return times


async def history_attacker(port: int, stop: asyncio.Event) -> None:
    history = json.dumps({"History": {"Limit": 500}})
    while not stop.is_set():
        try:
            client = await RawClient.connect(
                "127.0.0.1", port, os.environ.get("ABUSE_PATH", "/ws"), rcvbuf=8192
            )
        except OSError:
            await asyncio.sleep(0.2)
            continue
        last = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() - last > 0.25:
                    await client.send_text(history)
                    last = time.monotonic()
                if not await asyncio.wait_for(client.reader.read(16384), 1):
                    break  # dropped by the server
                await asyncio.sleep(0.01)
        except (OSError, TimeoutError):
            pass
        finally:
            client.close()


async def resume_attacker(port: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            client = await RawClient.connect("127.0.0.1", port, "/ws?since=0", rcvbuf=4096)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 6)
        client.close()


def attack(kind: str, port: int, seconds: float, stop_flag: Any) -> None:
    """The attackers, in a process of their own so the honest client's loop is not theirs."""

    async def main() -> None:
        stop = asyncio.Event()
        attacker = history_attacker if kind == "history" else resume_attacker
        tasks = [asyncio.create_task(attacker(port, stop)) for _ in range(ATTACKERS)]
        await asyncio.to_thread(stop_flag.wait, seconds)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")


async def phase(server: ServerProcess, kind: str, seconds: float, cap: int) -> dict[str, Any]:
    rss = Rss(server.pid)
    await asyncio.sleep(1)
    idle = rss.now()
    stop = asyncio.Event()
    alone = asyncio.create_task(honest(server.url, stop))
    await asyncio.sleep(seconds / 2)
    stop.set()
    base = await alone
    stop = asyncio.Event()
    watcher = asyncio.create_task(rss.watch(stop, cap))
    stop_flag = multiprocessing.Event()
    attackers = multiprocessing.Process(
        target=attack, args=(kind, server.port, seconds, stop_flag), daemon=True
    )
    attackers.start()
    await asyncio.sleep(0.5)  # let them connect before the honest client starts measuring
    during = asyncio.create_task(honest(server.url, stop))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    capped = stop.is_set()
    stop.set()
    stop_flag.set()
    attacked = await during
    await asyncio.to_thread(attackers.join, 30)
    await watcher
    await asyncio.sleep(5)
    after = rss.now()
    mib = 2**20
    return {
        "idle_mib": round(idle / mib, 1),
        "peak_mib": round(rss.peak / mib, 1),
        "peak_over_idle_mib": round((rss.peak - idle) / mib, 1),
        "after_over_idle_mib": round((after - idle) / mib, 1),
        "rss_capped": capped,
        "p99_alone_ms": round(p99(base), 1),
        "p99_attacked_ms": round(p99(attacked), 1),
        "p99_ratio": round(p99(attacked) / p99(base), 2) if base and attacked else None,
        "round_trips": [len(base), len(attacked)],
    }


async def run(code: Path, seconds: float, cap_mib: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "abuse.db"
        build(db, code)
        # Run from the checkout: `python -m` puts the working directory first on the path.
        server = ServerProcess(
            db,
            prefix=("env", f"--chdir={code}"),
            env={"PYTHONPATH": str(code)},
            log=Path(tmp) / "server.log",
        )
        server.start()
        try:
            results = {}
            for kind in os.environ.get("ABUSE_KINDS", "history,resume").split(","):
                results[kind] = await phase(server, kind, seconds, cap_mib * 2**20)
            return results
        finally:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each attack")
    parser.add_argument("--rss-cap", type=int, default=2048, help="stop an attack at this RSS")
    parser.add_argument(
        "--code", action="append", type=Path, help="checkout(s) to serve (default: this one)"
    )
    args = parser.parse_args()
    codes = args.code or [Path(__file__).resolve().parent.parent]
    report = {}
    for code in codes:
        report[str(code)] = asyncio.run(run(code.resolve(), args.seconds, args.rss_cap))
        print(json.dumps({str(code): report[str(code)]}), flush=True)


if __name__ == "__main__":
    main()
