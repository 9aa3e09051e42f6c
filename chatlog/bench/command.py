"""``chatlog bench``: a load generator for chatlog (and any server speaking its wire protocol).

The coordinator (this process) never runs a client: it starts the servers
(:mod:`chatlog.bench.spawn`, :mod:`chatlog.bench.postgres`), measures each of them in turn
(:mod:`chatlog.bench.measure`, which runs the client processes of :mod:`chatlog.bench.loadgen`)
and reports medians (:mod:`chatlog.bench.report`), with ratios against a bare broadcast server
(:mod:`chatlog.bench.baseline`) measured the same way.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import click

from chatlog.bench.disk import commit_latency, fsync_latency
from chatlog.bench.loadgen import Config
from chatlog.bench.measure import measure, stored_once
from chatlog.bench.postgres import spawn_cluster
from chatlog.bench.report import (
    above_bare,
    disk_lines,
    failures,
    notes_for,
    ratios_of,
    render,
    stored_once_line,
    summarise,
)
from chatlog.bench.spawn import Launch, ServerProbe, Spawned, chatlog_argv, free_port


@dataclass
class Target:
    """A server to measure: spawned by the bench or reached at ``--url``."""

    name: str
    make: Callable[[], Launch]
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

        def spawn_chatlog() -> Launch:
            port = free_port()
            db = workdir / f"bench-{time.monotonic_ns()}.db"
            server = Spawned(
                chatlog_argv(port, db, synchronous, server_args),
                port,
                workdir / "chatlog.log",
                env,
            )
            return Launch(server.url, server, ServerProbe(server.proc.pid), sqlite=db)

        def spawn_baseline() -> Launch:
            port = free_port()
            argv = [sys.executable, "-m", "chatlog.bench.baseline", "--port", str(port)]
            server = Spawned(argv, port, workdir / "baseline.log", env)
            return Launch(server.url, server, ServerProbe(server.proc.pid))

        def external() -> Launch:
            return Launch(cfg.url, None, ServerProbe(pid) if pid else None, urls=cfg.urls)

        # "target": a server at --url, which may be anything speaking the protocol.
        main = "chatlog" if spawn else "target"
        targets.append(Target(main, spawn_chatlog if spawn else external))
        if baseline:
            targets.append(Target("baseline", spawn_baseline))
        if postgres:
            for count in pg_servers:
                make = partial(
                    spawn_cluster, postgres, count, synchronous, server_args, workdir, env
                )
                targets.append(Target(f"postgres-{count}", make))
        disk: list[dict[str, Any]] = []
        commits: list[dict[str, Any]] = []
        for i in range(repeat):
            if spawn:  # the disk under the spawned logs, measured between the servers' runs
                disk.append(fsync_latency(workdir))
            for target in targets:
                launch = target.make()
                try:
                    if launch.servers:
                        launch.servers.wait_ready()
                    echo(f"run {i + 1}/{repeat}: {target.name} at {launch.url}")
                    run_cfg = replace(cfg, url=launch.url, urls=launch.urls)
                    run = measure(run_cfg, launch.probe)
                finally:
                    if launch.servers:
                        launch.servers.stop()
                if launch.sqlite is not None and cfg.nonce:
                    # After stop: the server has committed and closed the file.
                    run |= stored_once(launch.sqlite, run["distinct_nonces"])
                if launch.sqlite is not None and target.name == main:
                    commits.append(commit_latency(launch.sqlite))
                target.runs.append(run)
        summaries = {t.name: summarise(t.runs) for t in targets}
        ratios = ratios_of(summaries[main], summaries["baseline"]) if baseline else {}
        vs_sqlite = {
            name: ratios_of(summary, summaries[main])
            for name, summary in summaries.items()
            if name.startswith("postgres-")
        }
        fsync = summarise(disk) if disk else None
        return {
            "config": asdict(cfg),
            "fsync_ms": fsync,
            "commit_ms": summarise(commits) if commits else None,
            "above_bare": above_bare(summaries[main], summaries["baseline"], fsync)
            if baseline and fsync
            else None,
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
@click.option(
    "--also-url",
    "also_urls",
    multiple=True,
    help="Another server on the same log (repeatable): clients are spread round-robin over "
    "--url and these, and every one must see every message in order.",
)
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
@click.option("--nonce", is_flag=True, help="Give every message a unique Nonce, as the page does.")
@click.option(
    "--retry-share",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    help="With --nonce: share of sends that repeat a recent message, nonce and all [0].",
)
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
    also_urls: tuple[str, ...],
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
    nonce: bool,
    retry_share: float,
    as_json: bool,
    postgres: str | None,
    pg_servers: str,
) -> None:
    """Load a chat server with N clients and report throughput, latency, CPU and losses.

    With --spawn the bench starts chatlog itself on a temporary database (heartbeat off);
    with --baseline it also starts a bare broadcast server that stores nothing and reports
    chatlog's figures as ratios of it. Every run checks that no message was lost, repeated
    or reordered. Use 127.0.0.1 and bounded runs: this is a load generator.

    With --nonce every message carries a unique "Nonce", as the chat page's do, so the bench
    measures the path browsers take (the server looks each nonce up before storing it).
    --retry-share F makes that share of sends a repeat of a recent message, as a client does
    after a lost ack; on a spawned SQLite server the bench then checks that the log holds
    one row per distinct nonce ("stored once") and fails if not.

    With --spawn --postgres URL it also measures 1 and 2 (--pg-servers) servers sharing a
    temporary PostgreSQL database, clients spread round-robin over them, and reports their
    figures relative to SQLite (the chatlog column).

    \b
    Example:
        chatlog bench --spawn --baseline --clients 100 --senders 10 --duration 4 --repeat 3
        chatlog bench --spawn --postgres postgresql://postgres@127.0.0.1/test --repeat 3
        chatlog bench --spawn --nonce --retry-share 0.3 --clients 20 --senders 5
    """
    if postgres and not spawn:
        raise click.UsageError("--postgres needs --spawn (the bench starts those servers)")
    if retry_share and not nonce:
        raise click.UsageError("--retry-share needs --nonce (a retry repeats a message's nonce)")
    cfg = Config(
        url=url,
        urls=(url, *also_urls) if also_urls else (),
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
        nonce=nonce,
        retry_share=retry_share,
        # A server at --url keeps what the bench sends: name its rooms as bench data, per run.
        room_prefix="bench" if spawn else f"bench-{secrets.token_hex(3)}",
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
    else:
        click.echo(render(cfg, report["results"], report["ratios"], report["vs_sqlite"]))
        if report["fsync_ms"]:
            click.echo(disk_lines(report["fsync_ms"], report["above_bare"], report["commit_ms"]))
        for note in report["notes"]:
            click.echo(f"note: {note}")
        for summary in report["results"].values():
            line = stored_once_line(summary)
            if line:
                click.echo(line)
    if not spawn and cfg.senders:
        first, last = f"{cfg.room_prefix}-0", f"{cfg.room_prefix}-{cfg.rooms - 1}"
        named = f"room {first}" if cfg.rooms == 1 else f"rooms {first} to {last}"
        click.echo(
            f"note: this run's messages stay in the target's log, in {named}; remove them with "
            "`chatlog purge --room ROOM --retain-messages 1` (or let retention do it)",
            err=as_json,
        )
    failed = failures(report["results"])
    if failed is not None:
        raise click.ClickException(failed)
    for name, runs in report["runs"].items():
        for i, run in enumerate(runs, 1):
            if run["stored_once"] is False:
                raise click.ClickException(
                    f"{name} run {i}: {run['stored_rows']} rows in the log for "
                    f"{run['distinct_nonces']} distinct nonces: not stored once"
                )


def _server_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise click.BadParameter("give server counts like 1,2", param_hint="--pg-servers")
    return counts
