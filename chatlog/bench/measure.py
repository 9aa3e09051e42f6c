"""One measured run of ``chatlog bench``: start the client processes, sample the server, merge.

:func:`measure` runs ``--procs`` client processes (:mod:`chatlog.bench.loadgen`), samples the
server's CPU time and RSS with psutil around the measured window and merges what the clients
saw into one set of figures: throughput, the latency histogram's quantiles, losses, CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from chatlog.bench.loadgen import BUCKET_NS, Config, raise_nofile, worker_main
from chatlog.bench.spawn import ServerProbe
from chatlog.log.open import open_log
from chatlog.settings import database_url

#: A client process busier than this fraction of one core is reported as saturated.
SATURATED = 0.9
#: Fewer connections than this and the RSS they add is lost in allocator noise (10 clients
#: "cost" 185 KiB each): the per-connection figure is left out.
RSS_MIN_CLIENTS = 1000


def _percentile(hist: dict[int, int], total: int, q: float) -> float:
    """The q-quantile of the merged latency histogram, in milliseconds (bucket upper edge)."""
    if not total:
        return float("nan")
    rank = math.ceil(q * total)
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return (bucket + 1) * BUCKET_NS / 1e6
    return float("nan")


def measure(cfg: Config, probe: ServerProbe | None) -> dict[str, Any]:
    """Run one load against ``cfg.url`` and return the merged figures."""
    raise_nofile()
    # fork: the coordinator runs no event loop, and the workers start in milliseconds.
    ctx: Any = mp.get_context("fork" if sys.platform == "linux" else "spawn")
    ready, go, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    rss_before = probe.rss() if probe else None
    procs = [
        ctx.Process(target=worker_main, args=(cfg, p, ready, go, results), daemon=True)
        for p in range(cfg.procs)
    ]
    for p in procs:
        p.start()
    try:
        failures = []
        for _ in procs:
            _proc, err = ready.get(timeout=cfg.connect_timeout + 30)
            if err:
                failures.append(err)
        if failures:
            for _ in procs:
                go.put((-1, -1))
            raise click.ClickException(f"clients could not connect: {failures[0]}")
        time.sleep(0.2)  # let the server settle after the connection storm
        counters = scrape(cfg.url)
        rss_connected = probe.rss() if probe else None
        start = time.monotonic_ns() + 100_000_000
        until = start + int((cfg.warmup + cfg.duration) * 1e9) if not cfg.messages else 2**62
        for _ in procs:
            go.put((start, until))
        cpu = None
        if probe:
            if cfg.messages:
                _sleep_until(start)
                cpu0 = probe.cpu()
            else:
                _sleep_until(start + int(cfg.warmup * 1e9))
                cpu0 = probe.cpu()
                _sleep_until(until)
                cpu = probe.cpu() - cpu0
        parts = [results.get(timeout=cfg.duration + cfg.warmup + 700) for _ in procs]
        if probe and cpu is None:
            # --messages: the whole run, drain included (the server idles through the quiet
            # tail, so this counts all the CPU the messages cost and nothing else).
            cpu = probe.cpu() - cpu0
        commit = _commit_stats(counters, scrape(cfg.url))
        for p in procs:
            p.join(10)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    return _merge(cfg, parts, probe, cpu, rss_before, rss_connected) | commit


def scrape(url: str) -> dict[str, float]:
    """The server's Prometheus counters (``/metrics`` next to the WebSocket path), if any."""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    try:
        with urllib.request.urlopen(f"{scheme}://{parts.netloc}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except (OSError, ValueError):
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values


def _commit_stats(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    commits = delta("chatlog_commit_seconds_count")
    if not commits:
        return {"commits": None, "rows_per_commit": None, "commit_ms": None}
    return {
        "commits": commits,
        "rows_per_commit": delta("chatlog_commit_batch_rows_sum") / commits,
        "commit_ms": delta("chatlog_commit_seconds_sum") / commits * 1e3,
    }


def _sleep_until(ns: int) -> None:
    delay = (ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def _merge(
    cfg: Config,
    parts: list[dict[str, Any]],
    probe: ServerProbe | None,
    cpu: float | None,
    rss_before: int | None,
    rss_connected: int | None,
) -> dict[str, Any]:
    sent: dict[int, int] = {}
    refused: dict[int, int] = {}
    room_of_sender: dict[int, str] = {}
    hist: dict[int, int] = {}
    for part in parts:
        sent.update(part["sent"])
        refused.update(part["refused"])
        room_of_sender.update(part["rooms_of_senders"])
        for bucket, count in part["hist"].items():
            hist[bucket] = hist.get(bucket, 0) + count
    accepted_by_room: dict[str, dict[int, int]] = {}
    for s, n in sent.items():
        accepted_by_room.setdefault(room_of_sender[s], {})[s] = n - refused.get(s, 0)
    lost = 0
    for part in parts:
        for room, got in part["recv"]:
            for s, n in accepted_by_room.get(room, {}).items():
                lost += max(0, n - got.get(s, 0))
    total = sum(hist.values())
    deliveries = sum(p["window_deliveries"] for p in parts)
    accepted = sum(p["window_accepted"] for p in parts)
    if cfg.messages:
        firsts = [p["first_send"] for p in parts if p["first_send"]]
        lasts = [p["last_recv"] for p in parts if p["last_recv"]]
        elapsed = (max(lasts) - min(firsts)) / 1e9 if firsts and lasts else 0.0
    else:
        elapsed = cfg.duration
    busy = max((p["cpu_busy"] for p in parts), default=0.0)
    closes: dict[str, int] = {}
    for part in parts:
        for code in part["closed"]:
            closes[str(code)] = closes.get(str(code), 0) + 1
    result: dict[str, Any] = {
        "msgs_per_s": accepted / elapsed if elapsed else 0.0,
        "deliveries_per_s": deliveries / elapsed if elapsed else 0.0,
        "messages": accepted,
        "deliveries": deliveries,
        "elapsed_s": elapsed,
        "latency_ms": {
            "p50": _percentile(hist, total, 0.50),
            "p90": _percentile(hist, total, 0.90),
            "p99": _percentile(hist, total, 0.99),
            "max": max((p["max_ns"] for p in parts), default=0) / 1e6,
        },
        "lost": lost,
        "duplicates": sum(p["dups"] for p in parts),
        "out_of_order": sum(p["disorder"] for p in parts),
        "refused": sum(refused.values()),
        "retries": sum(p["retries"] for p in parts),
        "retries_answered": sum(p["retries_answered"] for p in parts),
        "retries_same_id": sum(p["retries_same_id"] for p in parts),
        # Each new message has a nonce of its own; a retry repeats one.
        "distinct_nonces": sum(sent.values()) if cfg.nonce else None,
        # Filled in by stored_once() once a spawned SQLite server has stopped.
        "stored_rows": None,
        "stored_once": None,
        "server_closes": closes,
        "client_cpu_busy": busy,
        "client_saturated": busy >= SATURATED,
        "server_cpu_s": cpu,
        "server_cpu_us_per_delivery": (cpu / deliveries * 1e6) if cpu and deliveries else None,
        "server_cpu_util": (cpu / elapsed) if cpu is not None and elapsed else None,
        "server_peak_rss_mib": probe.peak_rss() / 2**20 if probe else None,
        "server_rss_kib_per_connection": (
            (rss_connected - rss_before) / 1024 / cfg.clients
            if rss_connected is not None
            and rss_before is not None
            and cfg.clients >= RSS_MIN_CLIENTS
            else None
        ),
    }
    return result


def stored_once(db: Path, distinct_nonces: int) -> dict[str, Any]:
    """Count the rows of a stopped server's log: one per distinct nonce sent, or a retry was
    stored twice (or a message not at all)."""
    rows = asyncio.run(_count_messages(database_url(str(db))))
    return {"stored_rows": rows, "stored_once": rows == distinct_nonces}


async def _count_messages(url: str) -> int:
    log = open_log(url, access="read")
    try:
        async with log.read_only() as reader:
            return int(await reader.scalar("SELECT count(*) FROM messages") or 0)
    finally:
        await log.dispose()
