"""The bench's disk probe, and how chatlog's latency above the bare server is set against it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from chatlog.bench.disk import commit_latency, fsync_latency
from chatlog.bench.report import above_bare, disk_lines
from chatlog.log.open import opened
from chatlog.log.sqlite.commit import CYCLE
from chatlog.settings import database_url


def test_fsync_probe_times_real_syncs_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """The probe syncs a real file in the given directory, reports ordered quantiles and
    removes its file."""
    figures = fsync_latency(tmp_path, count=50, seconds=5)
    assert figures["rounds"] == 50
    assert 0 < figures["p50"] <= figures["p99"] <= figures["max"]
    assert list(tmp_path.iterdir()) == []


def test_commit_probe_commits_real_messages_to_a_room_of_its_own(tmp_path: Path) -> None:
    """The commit probe times the writer's own commits on a real log, every one stored, in
    the room ``bench-commit`` only."""
    path = tmp_path / "log.db"
    asyncio.run(created(path))
    figures = commit_latency(path, count=30, seconds=10)
    assert figures["rounds"] == 30
    assert 0 < figures["p50"] <= figures["p99"] <= figures["max"]
    with sqlite3.connect(path) as conn:
        rooms = conn.execute("SELECT room, count(DISTINCT nonce) FROM messages GROUP BY room")
        assert rooms.fetchall() == [("bench-commit", CYCLE + 30)]


async def created(path: Path) -> None:
    """A log created and migrated, as a spawned server leaves it."""
    async with opened(database_url(str(path))):
        pass


def test_latency_above_the_bare_server_is_put_in_units_of_the_disk() -> None:
    """What chatlog adds to the baseline's p50 and p99 is given in ms and in fsyncs."""
    chatlog = {"latency_ms": {"p50": 1.0, "p99": 5.0}}
    bare = {"latency_ms": {"p50": 0.5, "p99": 2.0}}
    fsync = {"p50": 0.25, "p99": 1.5, "max": 3.0, "rounds": 2000}
    added = above_bare(chatlog, bare, fsync)
    assert added == {"p50_ms": 0.5, "p50_x_fsync": 2.0, "p99_ms": 3.0, "p99_x_fsync": 2.0}
    commit = {"p50": 0.5, "p99": 3.0, "max": 4.0, "rounds": 1000}
    text = disk_lines(fsync, added, commit)
    assert "p50 0.250  p99 1.500" in text
    assert "one commit alone, on the run's log: p50 0.500 ms = 2.0x the disk's" in text
    assert "p50 +0.50 ms = 2.0x the disk's p50" in text
    assert "p99 +3.00 ms = 2.0x the disk's p99" in text
