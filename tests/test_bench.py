"""`chatlog bench` end to end: it spawns chatlog and the baseline and reports every figure."""

from __future__ import annotations

import json

from tests.helpers import run_cli

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
    """A small spawned run against chatlog and the baseline loses and repeats nothing."""
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
