"""Whole-command replay and export speed against a plain ``sqlite3`` script, in the same run.

Builds a log of ``--rows`` messages (default 1,000,000) with the real schema (alembic) and
plain ``sqlite3.executemany`` (or reuses ``--db``), checks that every command below writes
byte-identical JSON lines for the first ``--check`` rows, then runs each as a whole process
with its output to /dev/null, ``--repeat`` rounds of each once, in a shuffled order:

* ``plain json``: a Python script that opens the file with ``sqlite3`` and writes each row
  with ``json.dumps`` (what one writes first);
* ``plain json_object``: the same script letting SQLite build each line (``json_object``),
  the fastest plain script we know;
* ``replay --format jsonl`` and ``export`` (to stdout) through the ``chatlog`` entry point,
  for each ``--checkout`` (``NAME=DIR``: that source tree on ``PYTHONPATH``; default: the
  ``chatlog`` this interpreter imports), so a branch and main are timed in the same run;
* with ``--formats``, also ``replay --format text`` and ``wire``.

Start-up is counted: this is what a user waits for. Prints the median and best rows/s of
each, the ratios the issue sets targets for (replay / the faster plain script >= 0.9, export /
replay >= 0.9, on medians) and the load average before and after. Not a test: it asserts
only that the outputs agree, and its figures depend on the machine.

    .venv/bin/python benchmarks/replay_bench.py --rows 1000000 --db /tmp/bench.db \\
        --checkout main=../main --checkout new=.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from chatlog.log.basics import COLUMNS as ALL_COLUMNS
from chatlog.log.open import opened

COLUMNS = "id, room, ws_id, author, message, text, raw, sent_at, nonce"
WORDS = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "eta", "theta", "iota", "mu"]
#: The plain scripts: argv is the file, the first and the last ID; JSON lines on stdout.
PLAIN_JSON = """
import json, sqlite3, sys
cols = {columns!r}
conn = sqlite3.connect(f"file:{{sys.argv[1]}}?mode=ro", uri=True)
cur = conn.execute(
    f"SELECT {{', '.join(cols)}} FROM messages WHERE id >= ? AND id <= ? ORDER BY id",
    (int(sys.argv[2]), int(sys.argv[3])),
)
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
while rows := cur.fetchmany(1000):
    sys.stdout.write("".join([dumps(dict(zip(cols, r))) + "\\n" for r in rows]))
"""
PLAIN_SQL = """
import sqlite3, sys
cols = {columns!r}
conn = sqlite3.connect(f"file:{{sys.argv[1]}}?mode=ro", uri=True)
line = "json_object(" + ", ".join(f"'{{c}}', {{c}}" for c in cols) + ")"
cur = conn.execute(
    f"SELECT {{line}} FROM messages WHERE id >= ? AND id <= ? ORDER BY id",
    (int(sys.argv[2]), int(sys.argv[3])),
)
while rows := cur.fetchmany(1000):
    sys.stdout.write("\\n".join([r[0] for r in rows]) + "\\n")
"""


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


def chatlog_command() -> list[str]:
    """The ``chatlog`` entry point beside this interpreter (as a user runs it), else ``-m``."""
    script = Path(sys.executable).with_name("chatlog")
    return [str(script)] if script.exists() else [sys.executable, "-m", "chatlog"]


def cases(
    path: Path,
    first: int,
    last: int,
    scripts: Path,
    checkouts: Sequence[tuple[str, str | None]],
    formats: Sequence[str],
) -> dict[str, tuple[list[str], str | None]]:
    """Every command to time: name -> (argv, PYTHONPATH or None)."""
    ids = [str(path), str(first), str(last)]
    found: dict[str, tuple[list[str], str | None]] = {
        "plain json": ([sys.executable, str(scripts / "plain_json.py"), *ids], None),
        "plain json_object": ([sys.executable, str(scripts / "plain_sql.py"), *ids], None),
    }
    chatlog = chatlog_command()
    span = f"{first}..{last}"
    for name, tree in checkouts:
        tag = f" [{name}]" if name else ""
        found[f"replay jsonl{tag}"] = (
            [*chatlog, "replay", span, "--db", str(path), "--format", "jsonl"],
            tree,
        )
        found[f"export{tag}"] = ([*chatlog, "export", span, "--db", str(path)], tree)
        for fmt in formats:
            found[f"replay {fmt}{tag}"] = (
                [*chatlog, "replay", span, "--db", str(path), "--format", fmt],
                tree,
            )
    return found


def environment(tree: str | None) -> dict[str, str]:
    """This environment, with ``tree`` (if given) as the only ``PYTHONPATH``."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(Path(tree).resolve())
    return env


def output_of(argv: list[str], tree: str | None) -> bytes:
    return subprocess.run(argv, env=environment(tree), capture_output=True, check=True).stdout


def timed(argv: list[str], tree: str | None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one whole run, output to /dev/null."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    # stderr is not a terminal (as in a script), so no progress bar is drawn.
    done = subprocess.run(
        argv, env=environment(tree), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wall = time.perf_counter() - wall
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def check_identical(
    path: Path, rows: int, scripts: Path, checkouts: Sequence[tuple[str, str | None]]
) -> None:
    """Every JSON lines command writes the same bytes for the first ``rows`` rows."""
    small = cases(path, 1, rows, scripts, checkouts, ())
    outputs = {
        name: output_of(argv, tree)
        for name, (argv, tree) in small.items()
        if name.startswith(("plain", "replay jsonl", "export"))
    }
    reference = outputs["plain json_object"]
    lines = reference.count(b"\n")
    assert lines == rows, f"the plain script wrote {lines} lines for {rows} rows"
    for name, out in outputs.items():
        assert out == reference, f"{name} writes other bytes than the plain script"
    print(
        f"outputs identical for IDs 1..{rows} ({len(reference):,} bytes each): {', '.join(outputs)}"
    )


def parse_checkout(text: str) -> tuple[str, str]:
    name, sep, tree = text.partition("=")
    if not sep or not name or not Path(tree).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: use NAME=DIR, DIR a chatlog source tree")
    return name, tree


def report(
    times: dict[str, list[tuple[float, float]]],
    rows: int,
    checkouts: Sequence[tuple[str, str | None]],
) -> None:
    """Median and best rows/s of each case, rows per CPU-second, then the ratios the issue's
    targets are about: by median wall time (the target) and by median CPU time (steadier on
    a shared machine, where another process's load stretches wall time)."""
    print(f"{rows:,} rows, {len(next(iter(times.values())))} runs each, interleaved")
    print(
        f"{'':26} {'median rows/s':>14} {'best rows/s':>12} {'median s':>9} "
        f"{'cpu s':>6} {'rows/cpu-s':>11}"
    )
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, runs in times.items():
        walls = [w for w, _ in runs]
        wall[name] = rows / statistics.median(walls)
        cpu[name] = rows / statistics.median(c for _, c in runs)
        print(
            f"{name:26} {wall[name]:>14,.0f} {rows / min(walls):>12,.0f} "
            f"{statistics.median(walls):>9.2f} {rows / cpu[name]:>6.2f} {cpu[name]:>11,.0f}"
        )
    for name, _tree in checkouts:
        tag = f" [{name}]" if name else ""
        replay, export = f"replay jsonl{tag}", f"export{tag}"
        for what, rate in (("wall", wall), ("cpu", cpu)):
            plain = max(rate["plain json"], rate["plain json_object"])
            stdlib = rate[replay] / rate["plain json"]
            print(
                f"{name or 'chatlog'} by {what}: replay jsonl / faster plain script "
                f"{rate[replay] / plain:.2f}x, / plain json {stdlib:.2f}x (target >= 0.9); "
                f"export / replay jsonl {rate[export] / rate[replay]:.2f}x (target >= 0.9)"
            )


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--check", type=int, default=2000, help="Rows compared byte for byte.")
    parser.add_argument("--db", type=Path, help="Reuse (or keep) the log at this path.")
    parser.add_argument(
        "--checkout",
        action="append",
        type=parse_checkout,
        default=[],
        metavar="NAME=DIR",
        help="Time chatlog from this source tree too (repeatable).",
    )
    parser.add_argument(
        "--formats", default="", help="Also time replay in these formats (e.g. text,wire)."
    )
    args = parser.parse_args()
    checkouts: list[tuple[str, str | None]] = args.checkout or [("", None)]
    formats = [f for f in args.formats.split(",") if f]
    with tempfile.TemporaryDirectory() as tmp:
        scripts = Path(tmp)
        (scripts / "plain_json.py").write_text(PLAIN_JSON.format(columns=ALL_COLUMNS))
        (scripts / "plain_sql.py").write_text(PLAIN_SQL.format(columns=ALL_COLUMNS))
        path = args.db or Path(tmp) / "bench.db"
        if not path.exists():
            seconds = build(path, args.rows)
            print(f"built {args.rows:,} messages in {seconds:.1f}s ({args.rows / seconds:,.0f}/s)")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            last = int(conn.execute("SELECT max(id) FROM messages").fetchone()[0])
            rows = int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
        check_identical(path, min(args.check, rows), scripts, checkouts)
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        todo = cases(path, 1, last, scripts, checkouts, formats)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in todo}
        # Every round runs each case once, in a new order (seeded, so reruns order alike):
        # a fixed order would give one case the same neighbour, and its cache or load, each time.
        order = list(todo)
        shuffle = random.Random(19).shuffle
        for _ in range(args.repeat):
            shuffle(order)
            for name in order:
                times[name].append(timed(*todo[name]))
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"sqlite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}")
        report(times, rows, checkouts)


if __name__ == "__main__":
    main_bench()
