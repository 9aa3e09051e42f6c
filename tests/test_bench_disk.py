"""The bench's disk probe, and how chatlog's latency above the bare server is set against it."""

from __future__ import annotations

from pathlib import Path

from chatlog.bench.disk import fsync_latency
from chatlog.bench.report import above_bare, disk_lines


def test_fsync_probe_times_real_syncs_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """The probe syncs a real file in the given directory, reports ordered quantiles and
    removes its file."""
    figures = fsync_latency(tmp_path, count=50, seconds=5)
    assert figures["rounds"] == 50
    assert 0 < figures["p50"] <= figures["p99"] <= figures["max"]
    assert list(tmp_path.iterdir()) == []


def test_latency_above_the_bare_server_is_put_in_units_of_the_disk() -> None:
    """What chatlog adds to the baseline's p50 and p99 is given in ms and in fsyncs."""
    chatlog = {"latency_ms": {"p50": 1.0, "p99": 5.0}}
    bare = {"latency_ms": {"p50": 0.5, "p99": 2.0}}
    fsync = {"p50": 0.25, "p99": 1.5, "max": 3.0, "rounds": 2000}
    added = above_bare(chatlog, bare, fsync)
    assert added == {"p50_ms": 0.5, "p50_x_fsync": 2.0, "p99_ms": 3.0, "p99_x_fsync": 2.0}
    text = disk_lines(fsync, added)
    assert "p50 0.250  p99 1.500" in text
    assert "p50 +0.50 ms = 2.0x the disk's p50" in text
    assert "p99 +3.00 ms = 2.0x the disk's p99" in text
