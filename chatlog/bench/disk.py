"""The disk's own commit latency: what a durable chat server cannot go below.

A SQLite commit under ``synchronous=FULL`` in WAL mode is a write of the new pages at the
WAL's end and one ``fdatasync``. :func:`fsync_latency` times that loop by itself, on a file in
the database's own directory (so on its file system), and the bench reports chatlog's
latency above the bare broadcast server against it: the part of a message's wait that is
the disk's, and the part that is ours. :func:`commit_latency` then times the writer's own
one-message commit on the log a run left behind, with nothing else running: how much of
that part one commit is by itself.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

from chatlog.log.open import open_log
from chatlog.settings import database_url

#: One WAL frame: a 24-byte header and a 4 KiB page. (A one-message commit writes about
#: twelve, for the row, its indexes and the search index; here twelve sync as fast as one.)
FRAME_BYTES = 4096 + 24
#: The loop writes frames one after another and starts over at this offset, as a WAL that
#: checkpoints does. The file is written in full first: on ext4 an ``fdatasync`` that also
#: commits a longer file (its new size, new blocks) takes about four times as long as one that
#: only flushes data into blocks already there, and a WAL cycling in place is the latter.
WRAP_BYTES = 4 * 1024 * 1024


def fsync_latency(directory: Path, *, count: int = 2000, seconds: float = 2.0) -> dict[str, Any]:
    """p50, p99 and max of ``write(frame) + fdatasync`` in ``directory``, in milliseconds
    (at most ``count`` rounds or ``seconds``, whichever ends first)."""
    path = directory / f"fsync-probe-{os.getpid()}-{time.monotonic_ns()}"
    frame = os.urandom(FRAME_BYTES)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    samples: list[float] = []
    try:
        os.pwrite(fd, bytes(WRAP_BYTES + FRAME_BYTES), 0)
        os.fsync(fd)
        offset = 0
        deadline = time.perf_counter() + seconds
        while len(samples) < count and time.perf_counter() < deadline:
            started = time.perf_counter()
            os.pwrite(fd, frame, offset)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - started) * 1000)
            offset = (offset + FRAME_BYTES) % WRAP_BYTES
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return quantiles(samples)


def commit_latency(db: Path, *, count: int = 1000, seconds: float = 2.0) -> dict[str, Any]:
    """p50, p99 and max of the server writer's commit of one message with a ``Nonce`` on the
    SQLite log ``db`` while no server runs, in milliseconds (see
    :meth:`chatlog.log.backend.LogBackend.time_commits`)."""

    async def run() -> list[float]:
        log = open_log(database_url(str(db)), access="write")
        try:
            return log.time_commits(count, seconds)
        finally:
            await log.dispose()

    return quantiles([s * 1000 for s in asyncio.run(run())])


def quantiles(samples: list[float]) -> dict[str, Any]:
    """The figures of a list of durations in ms."""
    samples.sort()
    return {
        "p50": statistics.median(samples),
        "p99": samples[min(len(samples) - 1, int(0.99 * len(samples)))],
        "max": samples[-1],
        "rounds": len(samples),
    }
