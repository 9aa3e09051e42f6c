"""`chatlog bench` end to end: it spawns chatlog and the baseline and reports every figure."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.backends import rows
from tests.helpers import CliResult, ServerProcess, run_cli

FIELDS = {
    "msgs_per_s",
    "deliveries_per_s",
    "latency_ms",
    "lost",
    "duplicates",
    "out_of_order",
    "server_cpu_us_per_delivery",
    "server_peak_rss_mib",
    "server_rss_kib_per_connection",
    "client_cpu_busy",
    "client_saturated",
}


SMALL = ("--clients", "5", "--senders", "2", "--messages", "200")


def test_bench_spawn_baseline_smoke() -> None:
    """A small spawned run against chatlog and the baseline loses and repeats nothing, and
    times the disk under the spawned log."""
    out = run_cli(
        "bench", "--spawn", "--baseline", *SMALL, "--json",
        env={"PYTHONUNBUFFERED": "1"}, process=True, timeout=90,
    )  # fmt: skip
    assert out.exit_code == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["results"]) == {"chatlog", "baseline"}
    for name, result in report["results"].items():
        assert set(result) >= FIELDS, f"{name} lacks {FIELDS - set(result)}"
        assert set(result["latency_ms"]) == {"p50", "p90", "p99", "max"}
        assert result["lost"] == 0 and result["duplicates"] == 0, name
        assert result["out_of_order"] == 0, name
        assert result["messages"] == 200, name
        assert result["deliveries"] == 200 * 5, name
        assert result["server_cpu_s"] is not None and result["server_peak_rss_mib"] > 0
    assert report["results"]["chatlog"]["rows_per_commit"] is not None
    assert {"deliveries_per_s", "latency_ms.p99"} <= set(report["ratios"])
    # The disk under the spawned log, timed in the same run, and chatlog's latency above the
    # bare server in its units.
    assert report["fsync_ms"]["rounds"] > 0 and report["fsync_ms"]["p50"] > 0
    assert set(report["above_bare"]) == {"p50_ms", "p50_x_fsync", "p99_ms", "p99_x_fsync"}


def bench(*args: str) -> CliResult:
    """Run `chatlog bench` with ``args`` as a process, as a user runs it."""
    return run_cli("bench", *args, env={"PYTHONUNBUFFERED": "1"}, process=True, timeout=90)


def test_bench_nonce_delivers_everything() -> None:
    """With --nonce every message, each with its own Nonce, reaches every client once."""
    out = bench("--spawn", *SMALL, "--nonce", "--json")
    assert out.exit_code == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["config"]["nonce"] is True
    result = report["results"]["chatlog"]
    assert result["messages"] == 200 and result["deliveries"] == 200 * 5
    assert result["lost"] == result["duplicates"] == result["out_of_order"] == 0
    assert result["refused"] == 0


def test_bench_retries_are_stored_once() -> None:
    """Retried nonces are answered with the original's ID and leave one row per nonce."""
    out = bench("--spawn", *SMALL, "--nonce", "--retry-share", "0.3")
    assert out.exit_code == 0, out.stderr
    assert "stored once: yes (200 rows for 200 distinct nonces)" in out.stdout
    rows = dict(re.findall(r"^(retries[\w ,]*?|lost|duplicates)\s+(\d+)$", out.stdout, re.M))
    assert int(rows["retries sent"]) > 0
    assert rows["retries answered, seen ID"] == rows["retries sent"]
    assert rows["lost"] == rows["duplicates"] == "0"


def test_bench_against_a_rate_limited_server_fails_and_says_which_flag(tmp_path: Path) -> None:
    """Against `serve`'s default rate limit the bench exits 1, says to restart it with --rate 0,
    and what it wrote is in a room named as bench data, which a note points out."""
    db = tmp_path / "target.db"
    with ServerProcess(db, "--rate", "50") as server:  # the default, which DEFAULTS turns off
        out = bench("--url", server.url, "--clients", "4", "--duration", "1.5", "--warmup", "0.2")
    assert out.exit_code == 1, out.stdout + out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: target: ") and "restart it with --rate 0" in error, error
    assert "closed clients with 1008" in out.stdout or "refused frames" in out.stdout
    rooms = {room for (room,) in rows(db, "SELECT DISTINCT room FROM messages")}
    assert len(rooms) == 1 and re.fullmatch(r"bench-[0-9a-f]{6}-0", rooms.pop() or "")
    assert "this run's messages stay in the target's log, in room bench-" in out.stdout
