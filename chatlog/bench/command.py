"""``chatlog bench``: a load generator for chatlog (and any server speaking its wire protocol).

The coordinator (this process) never runs a client: it spawns the servers, starts ``--procs``
client processes (:mod:`chatlog.bench.loadgen`), samples the server's CPU time and RSS with psutil
around the measured window, merges what the clients saw and reports it, with ratios against
a bare broadcast server (:mod:`chatlog.bench.baseline`) measured the same way.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import click

from chatlog.bench.loadgen import BUCKET_NS, Config, raise_nofile, worker_main
from chatlog.bench.report import notes_for, ratios_of, render, summarise

#: A client process busier than this fraction of one core is reported as saturated.
SATURATED = 0.9
#: Fewer connections than this and the RSS they add is lost in allocator noise (10 clients
#: "cost" 185 KiB each): the per-connection figure is left out.
RSS_MIN_CLIENTS = 1000


# --- servers spawned by the bench ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Spawned:
    """A server process started by the bench, stopped by its own PID when the run ends."""

    def __init__(self, argv: list[str], port: int, log: Path, env: dict[str, str]) -> None:
        self.port = port
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise click.ClickException(
                    f"the server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise click.ClickException(f"the server did not answer /healthz within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class ServerProbe:
    """CPU time and memory of a server process (spawned, or given with ``--pid``)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.pid = pid
        self.proc = psutil.Process(pid)

    def cpu(self) -> float:
        times = self.proc.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def peak_rss(self) -> int:
        """VmHWM (the kernel's peak RSS) on Linux, else the current RSS."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return self.rss()


def chatlog_argv(port: int, db: Path | str, synchronous: str, extra: tuple[str, ...]) -> list[str]:
    """The command line of a spawned chatlog server: temp db, heartbeat off, no rate limit."""
    argv = [sys.executable, "-m", "chatlog", "serve", "--port", str(port), "--db", str(db)]
    argv += ["--heartbeat", "0", "--synchronous", synchronous]
    # The load comes from one address at rates no person reaches: lift the rate limit and
    # the per-address connection cap (chatlog.server.limits), or they would throttle the bench.
    argv += ["--rate", "0", "--max-connections-per-ip", "0"]
    return argv + list(extra)


# --- the coordinator ---------------------------------------------------------------------


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


class Running(Protocol):
    """What a target's servers offer: one :class:`Spawned` or a PostgreSQL cluster."""

    def wait_ready(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Target:
    """A server to measure: spawned by the bench or reached at ``--url``."""

    name: str
    make: Callable[[], tuple[str, Running | None, ServerProbe | None]]
    runs: list[dict[str, Any]] = field(default_factory=list)


def run_bench(
    cfg: Config,
    *,
    spawn: bool,
    baseline: bool,
    repeat: int,
    synchronous: str,
    pid: int | None,
    server_args: tuple[str, ...],
    echo: Callable[[str], None],
    postgres: str | None = None,
    pg_servers: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Measure chatlog (and the baseline) ``repeat`` times, alternating, and summarise.

    With ``postgres`` (a PostgreSQL server URL) it also measures ``pg_servers`` servers on
    one temporary PostgreSQL database each, and reports their figures relative to SQLite.
    """
    workdir = Path(tempfile.mkdtemp(prefix="chatlog-bench-"))
    env = {**os.environ, "CHATLOG_LOG_LEVEL": "WARNING"}
    try:
        targets: list[Target] = []

        def spawn_chatlog() -> tuple[str, Spawned | None, ServerProbe | None]:
            port = _free_port()
            db = workdir / f"bench-{time.monotonic_ns()}.db"
            server = Spawned(
                chatlog_argv(port, db, synchronous, server_args),
                port,
                workdir / "chatlog.log",
                env,
            )
            return server.url, server, ServerProbe(server.proc.pid)

        def spawn_baseline() -> tuple[str, Spawned | None, ServerProbe | None]:
            port = _free_port()
            argv = [sys.executable, "-m", "chatlog.bench.baseline", "--port", str(port)]
            server = Spawned(argv, port, workdir / "baseline.log", env)
            return server.url, server, ServerProbe(server.proc.pid)

        def external() -> tuple[str, Spawned | None, ServerProbe | None]:
            return cfg.url, None, ServerProbe(pid) if pid else None

        # "target": a server at --url, which may be anything speaking the protocol.
        main = "chatlog" if spawn else "target"
        targets.append(Target(main, spawn_chatlog if spawn else external))
        if baseline:
            targets.append(Target("baseline", spawn_baseline))
        if postgres:
            from chatlog.bench.postgres import spawn_cluster

            for count in pg_servers:
                make = partial(
                    spawn_cluster, postgres, count, synchronous, server_args, workdir, env
                )
                targets.append(Target(f"postgres-{count}", make))
        for i in range(repeat):
            for target in targets:
                url, server, probe = target.make()
                try:
                    if server:
                        server.wait_ready()
                    echo(f"run {i + 1}/{repeat}: {target.name} at {url}")
                    urls = tuple(getattr(server, "urls", ()))
                    target.runs.append(measure(replace(cfg, url=url, urls=urls), probe))
                finally:
                    if server:
                        server.stop()
        summaries = {t.name: summarise(t.runs) for t in targets}
        ratios = ratios_of(summaries[main], summaries["baseline"]) if baseline else {}
        vs_sqlite = {
            name: ratios_of(summary, summaries[main])
            for name, summary in summaries.items()
            if name.startswith("postgres-")
        }
        return {
            "config": asdict(cfg),
            "vs_sqlite": vs_sqlite,
            "synchronous": synchronous if spawn else None,
            "repeat": repeat,
            "results": summaries,
            "runs": {t.name: t.runs for t in targets},
            "ratios": ratios,
            "notes": notes_for(summaries),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@click.command()
@click.option("--url", default="ws://127.0.0.1:8080/ws", show_default=True, help="Server to load.")
@click.option("--clients", type=click.IntRange(1), default=10, show_default=True, help="Sockets.")
@click.option("--senders", type=click.IntRange(0), help="Clients that send [all].")
@click.option(
    "--rate",
    type=click.FloatRange(0),
    default=0,
    help="Messages/s in total [0: unlimited, closed loop].",
)
@click.option("--size", type=click.IntRange(1), default=100, show_default=True, help="Text bytes.")
@click.option("--duration", type=click.FloatRange(0), default=5.0, help="Seconds measured [5].")
@click.option("--messages", type=click.IntRange(0), default=0, help="Send N in all, no --duration.")
@click.option("--rooms", type=click.IntRange(1), default=1, show_default=True, help="Rooms.")
@click.option("--procs", type=click.IntRange(1), default=1, help="Client processes [1].")
@click.option("--window", type=click.IntRange(0), default=0, help="In flight per sender [auto].")
@click.option("--warmup", type=click.FloatRange(0), default=1.0, help="Unmeasured seconds [1].")
@click.option("--spawn", is_flag=True, help="Start `chatlog serve` on a temporary database.")
@click.option("--baseline", is_flag=True, help="Also measure a bare broadcast server.")
@click.option("--repeat", type=click.IntRange(1), default=1, help="Runs per server; medians [1].")
@click.option("--synchronous", default="FULL", show_default=True, help="Of the spawned server.")
@click.option("--pid", type=int, help="PID of the server at --url (for CPU and RSS).")
@click.option("--server-arg", "server_args", multiple=True, help="Extra `serve` argument.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--postgres",
    metavar="URL",
    help="With --spawn: also measure servers on a temporary database on this PostgreSQL.",
)
@click.option(
    "--pg-servers",
    default="1,2",
    show_default=True,
    help="With --postgres: how many servers share the database, per measured target.",
)
def bench(
    url: str,
    clients: int,
    senders: int | None,
    rate: float,
    size: int,
    duration: float,
    messages: int,
    rooms: int,
    procs: int,
    window: int,
    warmup: float,
    spawn: bool,
    baseline: bool,
    repeat: int,
    synchronous: str,
    pid: int | None,
    server_args: tuple[str, ...],
    as_json: bool,
    postgres: str | None,
    pg_servers: str,
) -> None:
    """Load a chat server with N clients and report throughput, latency, CPU and losses.

    With --spawn the bench starts chatlog itself on a temporary database (heartbeat off);
    with --baseline it also starts a bare broadcast server that stores nothing and reports
    chatlog's figures as ratios of it. Every run checks that no message was lost, repeated
    or reordered. Use 127.0.0.1 and bounded runs: this is a load generator.

    With --spawn --postgres URL it also measures 1 and 2 (--pg-servers) servers sharing a
    temporary PostgreSQL database, clients spread round-robin over them, and reports their
    figures relative to SQLite (the chatlog column).

    \b
    Example:
        chatlog bench --spawn --baseline --clients 100 --senders 10 --duration 4 --repeat 3
        chatlog bench --spawn --postgres postgresql://postgres@127.0.0.1/test --repeat 3
    """
    if postgres and not spawn:
        raise click.UsageError("--postgres needs --spawn (the bench starts those servers)")
    cfg = Config(
        url=url,
        clients=clients,
        senders=min(clients, clients if senders is None else senders),
        rate=rate,
        size=size,
        duration=duration if not messages else 0.0,
        messages=messages,
        rooms=rooms,
        procs=min(procs, clients),
        window=window,
        warmup=warmup if not messages else 0.0,
    )
    if cfg.senders == 0:
        cfg = replace(cfg, duration=0.0, warmup=0.0, messages=0)
    report = run_bench(
        cfg,
        spawn=spawn,
        baseline=baseline,
        repeat=repeat,
        synchronous=synchronous.upper(),
        pid=pid,
        server_args=server_args,
        echo=(lambda text: click.echo(text, err=True)) if not as_json else (lambda text: None),
        postgres=postgres,
        pg_servers=_server_counts(pg_servers),
    )
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(render(cfg, report["results"], report["ratios"], report["vs_sqlite"]))
    for note in report["notes"]:
        click.echo(f"note: {note}")


def _server_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise click.BadParameter("give server counts like 1,2", param_hint="--pg-servers")
    return counts
