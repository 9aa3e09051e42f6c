"""Replay and export speed against the raw sqlite3 fetch rate, in the same run.

Builds a log of ``--rows`` messages (default 1,000,000) with the real schema (alembic) and
plain ``sqlite3.executemany``, then times, interleaved and ``--repeat`` times each:

* ``raw``: ``sqlite3`` fetching every column of the same rows, ``fetchmany`` in batches;
* ``replay --format jsonl`` to /dev/null and ``export -o FILE``, run in-process through the
  real click commands (so interpreter start-up is not counted);
* optionally ``replay --format text`` and ``--format wire``.

Prints rows/s (best run) and each one's ratio to the raw fetch rate. Not a test: it asserts
nothing and its figures depend on the machine.

    PYTHONPATH=. python benchmarks/replay_bench.py --rows 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from chatlog.cli.main import main
from chatlog.log.open import opened

COLUMNS = "id, room, ws_id, author, message, text, raw, sent_at, nonce"
WORDS = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "eta", "theta", "iota", "mu"]


def build(path: Path, rows: int) -> float:
    """Create and fill the log; return the seconds it took."""
    began = time.perf_counter()

    async def migrate() -> None:
        async with opened(f"sqlite+aiosqlite:///{path}"):
            pass

    asyncio.run(migrate())
    texts = [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 6)) for i in range(64)]
    bodies = [base64.b64encode(t.encode()).decode() for t in texts]
    authors = [f"user{i}" for i in range(50)]
    raws = [
        [json.dumps({"Message": b, "Author": a}, ensure_ascii=False) for a in authors]
        for b in bodies
    ]
    start = datetime(2026, 1, 1)

    def generate() -> Iterator[tuple[object, ...]]:
        # One message every 100 ms; the date and time prefix changes once a second.
        prefix = ""
        for i in range(1, rows + 1):
            k, a = i % 64, i % 50
            if i % 10 == 0 or not prefix:
                prefix = (start + timedelta(seconds=i // 10)).strftime("%Y-%m-%d %H:%M:%S")
            yield (
                i,
                f"room{i % 10}",
                f"ws{i % 997:022d}",
                authors[a],
                bodies[k],
                texts[k],
                raws[k][a],
                f"{prefix}.{(i % 10) * 100_000 + i % 1000:06d}",
                None,
            )

    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-200000")
        # Loading first and indexing after is several times faster; the same DDL comes back.
        indexes = [
            sql
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages' "
                "AND sql IS NOT NULL"
            )
        ]
        conn.execute("BEGIN")
        for sql in indexes:
            conn.execute(f"DROP INDEX {sql.split(' ON ')[0].split()[-1]}")
        conn.executemany(f"INSERT INTO messages ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", generate())
        for sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - began


def raw_fetch(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        cursor = conn.execute(f"SELECT {COLUMNS} FROM messages ORDER BY id")
        count = 0
        while batch := cursor.fetchmany(5000):
            count += len(batch)
    return count


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def cli(*args: str) -> Callable[[], None]:
    def run() -> None:
        with stdout_to_devnull():
            main(list(args), standalone_mode=False)

    return run


def timed(action: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", type=Path, help="Reuse (or keep) the log at this path.")
    parser.add_argument("--formats", default="jsonl,export,text,wire")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench.db"
        if not path.exists():
            seconds = build(path, args.rows)
            print(f"built {args.rows:,} messages in {seconds:.1f}s ({args.rows / seconds:,.0f}/s)")
        rows = raw_fetch(path)
        out = str(Path(tmp) / "export.jsonl")
        cases: dict[str, Callable[[], object]] = {"raw sqlite3 fetch": lambda: raw_fetch(path)}
        wanted = args.formats.split(",")
        for fmt in ("jsonl", "text", "wire"):
            if fmt in wanted:
                cases[f"replay --format {fmt}"] = cli("replay", "--db", str(path), "--format", fmt)
        if "export" in wanted:
            cases["export -o FILE"] = cli("export", "--db", str(path), "-o", out)
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for name, action in cases.items():
                wall, cpu = timed(action)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, cpu)
        raw_rate = rows / best["raw sqlite3 fetch"][0]
        print(f"{rows:,} rows, best of {args.repeat}, sqlite {sqlite3.sqlite_version}")
        print(f"{'':24} {'rows/s':>11} {'vs raw':>7} {'rows/cpu-s':>11}")
        for name, (wall, cpu) in best.items():
            ratio = rows / wall / raw_rate
            print(f"{name:24} {rows / wall:>11,.0f} {ratio:>6.2f}x {rows / cpu:>11,.0f}")


if __name__ == "__main__":
    main_bench()
