"""Resume deep in a large log: time to the first frame and backlog rows/s.

Builds logs of growing size with plain sqlite3 (fast), serves each with a real
`chatlog serve` subprocess, and resumes from an ID near the end over a real socket.

    .venv/bin/python benchmarks/resume_bench.py --rows 1000000 --backlog 10000

With ``--db FILE`` the log is built once and kept (one size only); each ``--checkout DIR``
then serves it with that checkout's code, alternated block by block, for before/after
figures from the same run (run it from a directory that holds no ``chatlog`` package, so
``python -m chatlog`` takes the checkout on ``PYTHONPATH``):

    cd /tmp && python /path/to/benchmarks/resume_bench.py --db /tmp/log1m.db \
        --checkout /path/to/main --checkout /path/to/branch

Besides the resume figures it times a ``History`` page of 50: the round trip on a warmed
socket, and the server's own work for it in-process (its reads through
``LogBackend.view`` and its frames, no socket); ``--postgres SERVER_URL`` times the latter on
a PostgreSQL log of the same rows too (a throwaway database, dropped at the end).
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

# After PYTHONPATH: with --checkout, each process runs the code of the checkout it names.
sys.path.append(str(Path(__file__).resolve().parent.parent))
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


async def resume_once(url: str, since: int) -> tuple[float, float, float, int]:
    """One resume: seconds from ``ws_connect`` to the first backlog Chat frame, to the
    ``Resumed`` marker, the backlog's rows/s, and its length."""
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        ws = await session.ws_connect(f"{url}?since={since}")
        await ws.receive()  # Status
        count, first = 0, 0.0
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
    return first, total, count / total, count


async def history_round_trips(url: str, times: int, limit: int = 50) -> list[float]:
    """Seconds from sending ``{"History": {"Limit": limit}}`` to its answer, on one warmed
    socket (loopback and the client's own parsing included)."""
    out = []
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)
        await ws.receive()  # Status
        await ws.receive()  # UserList
        request = json.dumps({"History": {"Limit": limit}})
        for _ in range(times + 3):
            t0 = time.perf_counter()
            await ws.send_str(request)
            frame = json.loads((await ws.receive(timeout=60)).data)
            out.append(time.perf_counter() - t0)
            assert frame["Type"] == "History" and len(frame["Messages"]) == limit, frame
        await ws.close()
    return out[3:]  # the first ones warm the statements and the page cache


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


async def measure(url: str, head: int, backlog: int, rounds: int) -> dict[str, float]:
    """Medians over ``rounds`` of each figure, on a server already running. Each kind of
    resume has a phase of its own: right after a 10,000-message backlog the server and this
    client are still busy with that connection, which is not what a resume of one message
    costs."""
    small_first, small_resumed, firsts, rates = [], [], [], []
    await resume_once(url, head - 10)  # warm the server's code and caches
    for _ in range(rounds * 2):
        # The room holds every 10th id: the newest one only.
        first, resumed, _, _ = await resume_once(url, head - 10)
        small_first.append(first)
        small_resumed.append(resumed)
    for _ in range(rounds):
        # Resume `backlog` room messages before the end.
        first, _, rate, _ = await resume_once(url, head - backlog * 10)
        firsts.append(first)
        rates.append(rate)
    history = await history_round_trips(url, 5 * rounds)
    return {
        "first_frame_ms": median_ms(firsts),
        "small_first_chat_ms": median_ms(small_first),
        "small_resumed_ms": median_ms(small_resumed),
        "history_rtt_ms": median_ms(history),
        "backlog_rows_per_s": statistics.median(rates),
    }


def history_server_time(db: str, times: int = 200, limit: int = 50) -> float:
    """In this process (the checkout on ``PYTHONPATH``): median ms of the server's work for a
    ``History`` page of ``limit``: its range, its floor, its rows and their frames, through
    :meth:`LogBackend.view` as ``chatlog.server.answers`` does (no socket). ``db`` is a
    SQLite file or a PostgreSQL URL."""
    from chatlog import protocol
    from chatlog.log.open import open_log
    from chatlog.server import answers

    async def run() -> float:
        url = db if "://" in db else f"sqlite+aiosqlite:///{db}"
        log = open_log(url, access="write")
        spent = []
        try:
            for _ in range(times + 10):
                t0 = time.perf_counter()
                ids, more, floor = await answers.history_range(log, "main", None, limit)
                rows = await answers.pager(log, "main", ids[0], chat_only=True)(ids[-1] - 1, limit)
                frame = protocol.history_frame([m.frame() for m in rows], more=more, floor=floor)
                protocol.encode(frame)
                spent.append(time.perf_counter() - t0)
        finally:
            await log.dispose()
        return median_ms(spent[10:])

    return asyncio.run(run())


def in_checkout(checkout: Path, db: Path | str) -> float:
    """:func:`history_server_time` run by ``checkout``'s code, in a process of its own."""
    import os
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--server-time", str(db)],
        env={**os.environ, "PYTHONPATH": str(checkout)},
        cwd=checkout,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.split()[-1])


FIGURES = (
    ("small_resumed_ms", "to Resumed ms"),
    ("small_first_chat_ms", "to 1st Chat ms"),
    ("first_frame_ms", "10k 1st Chat ms"),
    ("backlog_rows_per_s", "rows/s"),
    ("history_rtt_ms", "History RTT ms"),
    ("history_server_ms", "History srv ms"),
)


def compare(db: Path, rows: int, checkouts: list[Path], args: argparse.Namespace) -> None:
    """Each checkout's server on the same log ``db``, alternated block by block."""
    import os

    if not db.exists():
        build(db, rows)
    head = int(sqlite3.connect(db).execute("select max(id) from messages").fetchone()[0])
    results: dict[Path, list[dict[str, float]]] = {c: [] for c in checkouts}
    figures = FIGURES
    pg_url = None
    if args.postgres is not None:
        pg_url = build_postgres(args.postgres, rows)
        figures += (("history_server_pg_ms", "History srv PG ms"),)
    try:
        run_blocks(db, head, checkouts, args, results, pg_url)
    finally:
        if pg_url is not None:
            from chatlog.log.open import drop_database

            asyncio.run(drop_database(args.postgres, PG_DATABASE))
    print(
        f"log of {head} rows, {args.blocks} blocks x {args.rounds} rounds, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{'checkout':24}" + "".join(f"{title:>18}" for _, title in figures))
    for checkout, blocks in results.items():
        cells = [statistics.median(b[key] for b in blocks) for key, _ in figures]
        print(f"{str(checkout)[-24:]:24}" + "".join(f"{c:>18.2f}" for c in cells))


def run_blocks(
    db: Path,
    head: int,
    checkouts: list[Path],
    args: argparse.Namespace,
    results: dict[Path, list[dict[str, float]]],
    pg_url: str | None,
) -> None:
    """Each checkout's figures, ``args.blocks`` times, alternated."""
    for _ in range(args.blocks):
        for checkout in checkouts:
            env = {"PYTHONPATH": str(checkout)}
            with ServerProcess(db, "--resume-max", str(args.backlog), env=env) as server:
                result = asyncio.run(measure(server.url, head, args.backlog, args.rounds))
            result["history_server_ms"] = in_checkout(checkout, db)
            if pg_url is not None:
                result["history_server_pg_ms"] = in_checkout(checkout, pg_url)
            results[checkout].append(result)


#: The throwaway database ``--postgres`` makes (and drops).
PG_DATABASE = "chatlog_resume_bench"


def build_postgres(server: str, rows: int) -> str:
    """A migrated PostgreSQL log of ``rows`` messages like :func:`build`'s, in a new
    database on ``server``; its URL."""
    import subprocess
    from datetime import datetime

    from chatlog.log.open import create_database, drop_database
    from chatlog.log.postgres import engine

    asyncio.run(drop_database(server, PG_DATABASE))
    url = asyncio.run(create_database(server, PG_DATABASE))
    url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    subprocess.run(
        [sys.executable, "-m", "chatlog", "db", "upgrade", "--db", url],
        check=True,
        capture_output=True,
    )
    body = base64.b64encode(b"hello from the benchmark").decode()
    raw = json.dumps({"Message": body, "Author": "bench"})
    rooms = ["main"] + [f"room{i}" for i in range(9)]
    sent = datetime(2026, 11, 25, 12)

    async def fill() -> None:
        conn = await engine.connect(url)
        try:
            columns = ["room", "ws_id", "author", "message", "text", "raw", "sent_at"]
            records = (
                (rooms[i % 10], "bench", "bench", body, "hello", raw, sent) for i in range(rows)
            )
            await conn.copy_records_to_table("messages", columns=columns, records=records)
            await conn.execute("ANALYZE messages")
        finally:
            await conn.close()

    asyncio.run(fill())
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--db", type=Path, help="reuse this log (built with --rows if missing); one size only"
    )
    parser.add_argument(
        "--checkout",
        type=Path,
        action="append",
        help="serve with this checkout's code (repeat to compare; alternated; needs --db)",
    )
    parser.add_argument("--blocks", type=int, default=3, help="alternations with --checkout")
    parser.add_argument(
        "--postgres",
        metavar="SERVER_URL",
        help="with --db: also time History's server work on a PostgreSQL log of --rows rows",
    )
    parser.add_argument("--server-time", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server_time is not None:
        print(f"{history_server_time(args.server_time):.4f}")
        return
    if args.db is not None:
        compare(args.db, args.rows, args.checkout or [Path.cwd()], args)
        return
    sizes = sorted({10_000, args.rows // 10, args.rows})
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"{'log rows':>10} {'first Chat ms':>15} {'to Resumed ms':>16} {'rows/s':>10}"
            f" {'History RTT ms':>15}"
        )
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
                f"{result['small_resumed_ms']:>16.2f} "
                f"{result['backlog_rows_per_s']:>10.0f} {result['history_rtt_ms']:>15.2f}"
                f"   (first frame x{result['first_frame_ms'] / baseline['first_frame_ms']:.2f}"
                " vs the smallest log)"
            )


if __name__ == "__main__":
    main()
