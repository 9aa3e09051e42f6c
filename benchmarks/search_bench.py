"""Full-text search: latency on a big log, the index's size, and what it costs ingest.

Builds a log of ``--rows`` messages (default 20,000; the README's figures are for 1,000,000)
in four rooms (IDs cycle through them), words drawn from a 3,000-word Zipf-like vocabulary
(``the`` in about half the messages), with ten rare words in one message per room each,
``release notes`` in 0.5 % and ``deploy*`` words in 2 %. It fills the index through the
same code the writer uses (``search.params``), then measures, through the server's own path
(``search_index.find`` on an async engine, ``Limit + 1`` rows, snippets built), p50/p99 over
``--repeat`` searches in one room for: a rare word, a common word (newest 20), a phrase and
a prefix.

Ingest with and without the index, two ways, alternating in the same run:

* ``commit``: the writer's own ``commit_batch`` on realistic texts (batches of 1 and of 100),
  against the same path with the index insert skipped, on a log at migration 0002;
* ``bench``: ``chatlog bench --spawn`` end to end, this tree against the commit before the
  index (``--base``, extracted with ``git archive``); its messages are 100 ``x``.

With ``--postgres URL`` the latencies are measured on a throwaway PostgreSQL database too.

    PYTHONPATH=. python benchmarks/search_bench.py --rows 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from chatlog.log.model import NewMessage
from chatlog.log.open import create_database, drop_database, opened
from chatlog.log.postgres import search as pg_search
from chatlog.log.search import SearchRequest
from chatlog.log.search_query import parse, snippet
from chatlog.log.sqlite import commit, search

ROOMS = 4
RARE = [f"zanzibarite{k}" for k in range(10)]
QUERIES = {
    "rare word": lambda i: RARE[i % len(RARE)],
    "common word, newest 20": lambda i: "the",
    "phrase": lambda i: '"release notes"',
    "prefix": lambda i: "depl*",
}
_SYLLABLES = ["ka", "lo", "mi", "ren", "to", "sa", "vu", "ne", "qui", "dor", "pe", "lia"]


def vocabulary(size: int = 3000) -> list[str]:
    rng = random.Random(7)
    words = ["the", "and", "to", "of", "is", "in", "it", "you", "that", "we"]
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def texts(rows: int, seed: int = 16) -> Iterator[str]:
    """The message texts, deterministic."""
    rng = random.Random(seed)
    words = vocabulary()
    # Each rare word once in each room (rows cycle through the rooms).
    rare_at = {rng.randrange(rows // ROOMS) * ROOMS + r: w for w in RARE for r in range(ROOMS)}
    for i in range(rows):
        picked = [words[int(len(words) ** rng.random()) - 1] for _ in range(rng.randint(4, 16))]
        if rng.random() < 0.5:
            picked.insert(rng.randrange(len(picked) + 1), "the")
        if rng.random() < 0.005:
            picked[-1:] = ["release", "notes"]
        if rng.random() < 0.02:
            picked.append(rng.choice(["deploy", "deployed", "deployment"]))
        if rng.random() < 0.05:
            picked.append(rng.choice(["Café", "東京都に行く", "résumé"]))
        if i in rare_at:
            picked.insert(0, rare_at[i])
        yield " ".join(picked)


def rows_of(count: int) -> Iterator[tuple[Any, ...]]:
    start = datetime(2026, 1, 1)
    raw = '{"Message":"eA=="}'
    for i, body in enumerate(texts(count), start=0):
        stamp = (start + timedelta(milliseconds=100 * i)).strftime("%Y-%m-%d %H:%M:%S.%f")
        yield (i + 1, f"room{i % ROOMS}", "ws", f"user{i % 50}", "eA==", body, raw, stamp, None)


def build_sqlite(path: Path, count: int) -> float:
    began = time.perf_counter()

    async def migrate() -> None:
        async with opened(f"sqlite+aiosqlite:///{path}"):
            pass

    asyncio.run(migrate())
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        chunk: list[tuple[Any, ...]] = []
        for row in rows_of(count):
            chunk.append(row)
            if len(chunk) == 10_000:
                _load(db, chunk)
                chunk = []
        _load(db, chunk)
        db.execute("COMMIT")
        db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - began


def _load(db: sqlite3.Connection, chunk: list[tuple[Any, ...]]) -> None:
    db.executemany(
        "INSERT INTO messages (id, room, ws_id, author, message, text, raw, sent_at, nonce) "
        "VALUES (?,?,?,?,?,?,?,?,?)",
        chunk,
    )
    search.index_sync(db, ((r[0], r[5]) for r in chunk))


def index_share(path: Path) -> tuple[float, float]:
    with sqlite3.connect(path) as db:
        total = db.execute("SELECT sum(pgsize) FROM dbstat").fetchone()[0]
        index = db.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'messages_fts%'"
        ).fetchone()[0]
    return index / total, total / 2**20


async def build_postgres(url: str, count: int) -> float:
    import asyncpg

    began = time.perf_counter()
    async with opened(url):
        pass
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        chunk: list[tuple[Any, ...]] = []

        async def flush() -> None:
            if not chunk:
                return
            cols = list(zip(*chunk, strict=True))
            await conn.execute(
                "INSERT INTO messages (id, room, ws_id, author, message, text, raw, sent_at, nonce)"
                " SELECT u.id, u.room, u.ws_id, u.author, u.message, u.text,"
                " u.raw, u.sent_at::timestamp, NULL FROM unnest($1::bigint[], $2::text[],"
                " $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])"
                " AS u(id, room, ws_id, author, message, text, raw, sent_at)",
                *cols[:8],
            )
            params = pg_search.params((r[0], r[5]) for r in chunk)
            await conn.execute(
                "INSERT INTO messages_fts SELECT u.id, u.words::tsvector"
                " FROM unnest($1::bigint[], $2::text[]) AS u(id, words)",
                [p["id"] for p in params],
                [p["words"] for p in params],
            )
            chunk.clear()

        for row in rows_of(count):
            chunk.append(row)
            if len(chunk) == 10_000:
                await flush()
        await flush()
        await conn.execute(f"SELECT setval(pg_get_serial_sequence('messages', 'id'), {count})")
        await conn.execute("VACUUM ANALYZE messages")
        await conn.execute("VACUUM ANALYZE messages_fts")
        share = await conn.fetchval(
            "SELECT (pg_total_relation_size('messages_fts'))::float8"
            " / (pg_total_relation_size('messages') + pg_total_relation_size('messages_fts'))"
        )
        print(f"  PostgreSQL index share: {share:.1%} of messages + index")
    finally:
        await conn.close()
    return time.perf_counter() - began


async def latencies(url: str, repeat: int) -> dict[str, tuple[float, float, int]]:
    out: dict[str, tuple[float, float, int]] = {}
    async with opened(url, migrate=False) as log:
        async with log.engine.connect() as conn:  # warm the pool and the caches
            for make in QUERIES.values():
                await log.search_index.find(conn, SearchRequest(parse(make(0)), rooms=("room1",)))
        for name, make in QUERIES.items():
            times = []
            found = 0
            for i in range(repeat):
                query = parse(make(i))
                request = SearchRequest(query, rooms=(f"room{i % ROOMS}",), limit=21)
                began = time.perf_counter()
                async with log.view() as view:
                    rows = await view.search(request)
                for row in rows[:20]:
                    snippet(row.text, query)
                times.append(time.perf_counter() - began)
                found += len(rows[:20])
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            out[name] = (statistics.median(times) * 1000, p99 * 1000, found // repeat)
    return out


def print_latencies(title: str, figures: dict[str, tuple[float, float, int]]) -> None:
    print(f"{title}\n  {'query':26} {'p50 ms':>8} {'p99 ms':>8} {'hits':>5}")
    for name, (p50, p99, hits) in figures.items():
        print(f"  {name:26} {p50:>8.2f} {p99:>8.2f} {hits:>5}")


def commit_ingest(tmp: Path, rounds: int) -> None:
    """The writer's commit with the index against the same commit without it."""
    sample = list(texts(4000, seed=99))
    made = datetime(2026, 1, 1)

    def batch(size: int, at: int) -> list[NewMessage]:
        return [
            NewMessage("main", "ws", "alice", "eA==", sample[(at + k) % len(sample)], "{}", {})
            for k in range(size)
        ]

    async def make(path: Path, revision: str) -> None:
        async with opened(f"sqlite+aiosqlite:///{path}", migrate=False) as log:
            await log.migrate(revision)

    with_index, without = tmp / "with.db", tmp / "without.db"
    asyncio.run(make(with_index, "head"))
    asyncio.run(make(without, "0002"))
    real = search.index_sync
    results: dict[tuple[int, bool], list[float]] = {}
    for _ in range(rounds):
        for size, total in ((1, 1000), (100, 20_000)):
            for indexed in (True, False) if _ % 2 == 0 else (False, True):
                path = with_index if indexed else without
                db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                search.index_sync = real if indexed else (lambda db, rows: None)  # type: ignore[assignment]
                began = time.perf_counter()
                for at in range(0, total, size):
                    commit.commit_batch(db, batch(size, at), made)
                results.setdefault((size, indexed), []).append(
                    total / (time.perf_counter() - began)
                )
                db.close()
    search.index_sync = real  # type: ignore[assignment]
    print(f"writer commit_batch, synchronous=FULL, medians of {rounds} alternating rounds:")
    for size in (1, 100):
        on = statistics.median(results[(size, True)])
        off = statistics.median(results[(size, False)])
        print(
            f"  batches of {size:>3}: {on:>9,.0f} msg/s with the index, {off:>9,.0f} without "
            f"({on / off:.2f}x)"
        )


def bench_ingest(tmp: Path, base: str, pairs: int, flags: list[str]) -> None:
    """``chatlog bench --spawn`` on this tree against the commit before the index."""
    here = Path(__file__).resolve().parent.parent
    base_tree = tmp / "base"
    base_tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(here), "archive", base], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(base_tree)], input=archive.stdout, check=True)
    trees = {"with index": here, "without (base)": base_tree}
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for pair in range(pairs):
        order = list(trees) if pair % 2 == 0 else list(reversed(trees))
        for name in order:
            env = {**os.environ, "PYTHONPATH": str(trees[name])}
            done = subprocess.run(
                [sys.executable, "-m", "chatlog", "bench", "--spawn", "--json", *flags],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=tmp,
            )
            result = json.loads(done.stdout)["results"]["chatlog"]
            figures[name].append((result["msgs_per_s"], result["server_cpu_us_per_delivery"]))
    print(f"chatlog bench --spawn {' '.join(flags)}, {pairs} alternating pairs (base {base[:10]}):")
    medians = {
        n: (statistics.median(r for r, _ in f), statistics.median(c for _, c in f))
        for n, f in figures.items()
    }
    for name, (rate, cpu) in medians.items():
        print(
            f"  {name:15} {rate:>9,.0f} msg/s  {cpu:6.1f} µs server CPU per delivery"
            f"  (runs: {', '.join(f'{r:,.0f}' for r, _ in figures[name])})"
        )
    on, off = medians["with index"], medians["without (base)"]
    print(f"  ratio: {on[0] / off[0]:.2f}x msg/s, {on[1] / off[1]:.2f}x CPU per delivery")


def base_commit() -> str:
    here = Path(__file__).resolve().parent.parent
    added = subprocess.run(
        [
            "git",
            "-C",
            str(here),
            "log",
            "--diff-filter=A",
            "--format=%H",
            "--",
            "migrations/versions/0003_search.py",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"{added[-1]}^"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=200, help="Searches per query kind.")
    parser.add_argument("--postgres", help="Also measure on a throwaway database of this server.")
    parser.add_argument("--commit-rounds", type=int, default=5)
    parser.add_argument("--bench-pairs", type=int, default=3, help="0: skip chatlog bench.")
    parser.add_argument("--base", help="The commit without the index [before 0003 was added].")
    parser.add_argument(
        "--bench-flags",
        default="--clients 10 --senders 10 --rooms 10 --duration 4",
    )
    args = parser.parse_args()
    print(f"sqlite {sqlite3.sqlite_version}, {args.rows:,} messages in {ROOMS} rooms")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "search.db"
        seconds = build_sqlite(path, args.rows)
        share, size = index_share(path)
        print(f"built and indexed in {seconds:.1f}s; file {size:,.0f} MiB, index {share:.1%} of it")
        print_latencies(
            f"SQLite, {args.repeat} searches each:",
            asyncio.run(latencies(f"sqlite+aiosqlite:///{path}", args.repeat)),
        )
        if args.postgres:
            name = f"chatlog_search_{uuid.uuid4().hex[:8]}"
            url = asyncio.run(create_database(args.postgres, name))
            pg_url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
            try:
                seconds = asyncio.run(build_postgres(pg_url, args.rows))
                print(f"  PostgreSQL built and indexed in {seconds:.1f}s")
                print_latencies(
                    f"PostgreSQL, {args.repeat} searches each:",
                    asyncio.run(latencies(pg_url, args.repeat)),
                )
            finally:
                asyncio.run(drop_database(args.postgres, name))
        if args.commit_rounds:
            commit_ingest(tmp, args.commit_rounds)
        if args.bench_pairs:
            bench_ingest(
                tmp, args.base or base_commit(), args.bench_pairs, args.bench_flags.split()
            )


if __name__ == "__main__":
    main()
