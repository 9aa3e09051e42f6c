"""Where a message's time goes inside the server at light load: queue, commit, fan-out.

Starts `chatlog serve` in a child process of this script with timers wrapped around three
steps of the write path, loads it with `chatlog bench --url --pid`, and prints, per step, the
quantiles of what the child measured:

* ``queue``: from the connection handing the message to the writer to its commit starting
  (waiting for a batch to form and behind the commit before);
* ``commit``: the writer's group commit (``BEGIN IMMEDIATE`` to ``COMMIT``, fsync included);
* ``fan-out``: framing the committed rows and writing them to every socket of the room;
* ``writer checkpoints``: WAL checkpoints the writer had to run itself, and how long each
  held the commits back.

Not a test: it asserts nothing and its figures depend on the machine.

    .venv/bin/python benchmarks/latency_breakdown.py --rate 1000 --clients 10 --duration 8
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def serve(argv: list[str], out: Path) -> None:
    """In the child: wrap the three steps with timers, then run `chatlog serve`."""
    from chatlog.cli.main import main
    from chatlog.log import writer
    from chatlog.log.sqlite import commit
    from chatlog.server import hub

    clock = time.perf_counter
    handed: dict[int, float] = {}
    spans: dict[str, list[float]] = {"queue": [], "commit": [], "fan-out": [], "checkpoint": []}

    append = writer.Writer.append

    async def timed_append(self: Any, message: Any) -> None:
        handed[id(message)] = clock()
        await append(self, message)

    run_commit = commit.SqliteCommitter.commit

    async def timed_commit(self: Any, batch: Any, sent_at: Any) -> Any:
        started = clock()
        spans["queue"] += [started - handed.pop(id(m), started) for m in batch]
        try:
            return await run_commit(self, batch, sent_at)
        finally:
            spans["commit"].append(clock() - started)

    run_checkpoint = commit.SqliteCommitter.checkpoint

    async def timed_checkpoint(self: Any) -> None:
        started = clock()
        await run_checkpoint(self)
        spans["checkpoint"].append(clock() - started)

    publish = hub.Hub.publish

    def timed_publish(self: Any, stored: Any) -> None:
        started = clock()
        publish(self, stored)
        spans["fan-out"].append(clock() - started)

    writer.Writer.append = timed_append  # type: ignore[method-assign]
    commit.SqliteCommitter.commit = timed_commit  # type: ignore[method-assign]
    commit.SqliteCommitter.checkpoint = timed_checkpoint  # type: ignore[method-assign]
    hub.Hub.publish = timed_publish  # type: ignore[method-assign]
    atexit.register(lambda: out.write_text(json.dumps(spans)))
    sys.argv = ["chatlog", "serve", *argv]
    main()


def quantiles(values: list[float]) -> str:
    if not values:
        return "none"
    ms = sorted(v * 1000 for v in values)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return (
        f"n={len(ms):>6}  p50 {pick(0.5):.3f}  p90 {pick(0.9):.3f}  p99 {pick(0.99):.3f}  "
        f"max {ms[-1]:.2f}  mean {sum(ms) / len(ms):.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", default="1000")
    parser.add_argument("--clients", default="10")
    parser.add_argument("--duration", default="8")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--plain", action="store_true", help="no Nonce (the page sends one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatlog-breakdown-") as tmp:
        out = Path(tmp) / "spans.json"
        env = {**os.environ, "CHATLOG_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(out), "--db", f"{tmp}/log.db",
             "--port", str(args.port), "--rate", "0", "--heartbeat", "0"],
            env=env,
        )  # fmt: skip
        try:
            time.sleep(3)  # start-up; the bench waits for the first Status anyway
            bench = [
                sys.executable, "-m", "chatlog", "bench", "--url",
                f"ws://127.0.0.1:{args.port}/ws", "--pid", str(child.pid),
                "--clients", args.clients, "--rate", args.rate, "--duration", args.duration,
            ] + ([] if args.plain else ["--nonce"])  # fmt: skip
            report = subprocess.run(bench, env=env, capture_output=True, text=True, timeout=120)
            kept = [ln for ln in report.stdout.splitlines() if "stay in the target" not in ln]
            print("\n".join(kept) or report.stderr)
        finally:
            child.terminate()
            child.wait(timeout=30)
        spans = json.loads(out.read_text())
    # The bench's first second is warm-up: leave that share of each step out here too.
    share = 1 / (float(args.duration) + 1)

    def measured(name: str) -> list[float]:
        values: list[float] = spans[name]
        return values[int(len(values) * share) :]

    print("\ninside the server:")
    for name in ("queue", "commit", "fan-out"):
        print(f"  {name:9} {quantiles(measured(name))}")
    print(f"  writer checkpoints {quantiles(spans['checkpoint'])}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[3:], Path(sys.argv[2]))
    else:
        main()
