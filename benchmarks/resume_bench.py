"""Resume deep in a large log: time to the first frame and backlog rows/s.

Builds logs of growing size with plain sqlite3 (fast), serves each with a real
`chatlog serve` subprocess, and resumes from an ID near the end over a real socket.

    .venv/bin/python benchmarks/resume_bench.py --rows 1000000 --backlog 10000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import ServerProcess


def build(path: Path, rows: int) -> None:
    """A migrated log with ``rows`` messages spread over 10 rooms, room 'main' included."""
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "chatlog", "db", "upgrade", "--db", str(path)],
        check=True,
        capture_output=True,
    )
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    body = base64.b64encode(b"hello from the benchmark").decode()
    raw = json.dumps({"Message": body, "Author": "bench"})
    rooms = ["main"] + [f"room{i}" for i in range(9)]
    batch = 50_000
    for start in range(0, rows, batch):
        conn.executemany(
            "insert into messages (room, ws_id, author, message, text, raw, sent_at) "
            "values (?, 'bench', 'bench', ?, 'hello from the benchmark', ?, "
            "'2026-11-25 12:00:00.000000')",
            ((rooms[i % 10], body, raw) for i in range(start, min(rows, start + batch))),
        )
        conn.commit()
    conn.close()


async def resume_once(url: str, since: int, backlog: int) -> tuple[float, float, int]:
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        ws = await session.ws_connect(f"{url}?since={since}")
        await ws.receive()  # Status
        count = 0
        while True:
            msg = await ws.receive(timeout=60)
            frame = json.loads(msg.data)
            if frame["Type"] == "Chat":
                if not count:
                    first = time.perf_counter() - t0
                count += 1
            elif frame["Type"] == "Resumed":
                break
        total = time.perf_counter() - t0
        await ws.close()
    return first, total, count


async def measure(url: str, head: int, backlog: int, rounds: int) -> dict[str, float]:
    firsts, rates, first_chat = [], [], []
    for _ in range(rounds):
        # The room holds every 10th id; resume `backlog` room messages before the end.
        first, total, count = await resume_once(url, head - backlog * 10, backlog)
        firsts.append(first * 1000)
        rates.append(count / total)
        f1, _, _ = await resume_once(url, head - 10, 1)
        first_chat.append(f1 * 1000)
    return {
        "first_frame_ms": statistics.median(firsts),
        "first_frame_small_resume_ms": statistics.median(first_chat),
        "backlog_rows_per_s": statistics.median(rates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sizes = sorted({10_000, args.rows // 10, args.rows})
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'log rows':>10} {'first Chat ms':>15} {'10-row resume ms':>16} {'rows/s':>10}")
        baseline: dict[str, float] | None = None
        for size in sizes:
            path = Path(tmp) / f"log{size}.db"
            build(path, size)
            head = size
            with ServerProcess(path, "--resume-max", str(args.backlog)) as server:
                result = asyncio.run(
                    measure(server.url, head, min(args.backlog, size // 10 - 1), args.rounds)
                )
            baseline = baseline or result
            print(
                f"{size:>10} {result['first_frame_ms']:>15.2f} "
                f"{result['first_frame_small_resume_ms']:>16.2f} "
                f"{result['backlog_rows_per_s']:>10.0f}"
                f"   (first frame x{result['first_frame_ms'] / baseline['first_frame_ms']:.2f}"
                " vs the smallest log)"
            )


if __name__ == "__main__":
    main()
