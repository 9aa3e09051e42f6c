"""``chatlog bench``: a load generator for chatlog (and any server speaking its wire protocol).

N clients join R rooms; M of them send chat messages whose extra keys carry the sender's
number ``S``, a per-sender sequence number ``N`` and the send time ``T``
(``time.monotonic_ns``: CLOCK_MONOTONIC is system-wide on Linux, so several client processes
share one clock). Every client checks, per sender, that sequence numbers arrive once and in
order and that IDs only grow. The coordinator (this process) never runs a client: it spawns
the servers, starts ``--procs`` client processes, samples the server's CPU time and RSS with
psutil around the measured window, and merges the results.

The clients are a minimal asyncio ``Protocol`` that parses unmasked server frames straight
from ``data_received``: with aiohttp's client, the load generator would be the bottleneck it
is meant to measure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import multiprocessing as mp
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import click
import orjson

from chatlog.loops import new_event_loop

#: Width of a latency histogram bucket, in nanoseconds (10 µs).
BUCKET_NS = 10_000
#: Deliveries in flight the closed loop aims for when no ``--window`` is given.
INFLIGHT_TARGET = 10_000
#: A client process busier than this fraction of one core is reported as saturated.
SATURATED = 0.9
#: Seconds of silence after the last send that end the drain phase.
QUIET = 0.3
#: Most seconds the drain phase may last.
DRAIN_MAX = 10.0


@dataclass(frozen=True)
class Config:
    """One measured run's load."""

    url: str
    clients: int = 10
    senders: int = 10
    rate: float = 0.0
    size: int = 100
    duration: float = 5.0
    messages: int = 0
    rooms: int = 1
    procs: int = 1
    window: int = 0
    warmup: float = 1.0
    connect_timeout: float = 120.0

    def room_of(self, index: int) -> int:
        return index % self.rooms

    def proc_of(self, index: int) -> int:
        return index % self.procs

    def inflight(self) -> int:
        """Messages each sender may have unanswered (closed loop, unlimited rate)."""
        if self.window:
            return self.window
        per_room = max(1, math.ceil(self.clients / self.rooms))
        return max(2, min(256, INFLIGHT_TARGET // max(1, self.senders * per_room)))


# --- the client side, run in worker processes ----------------------------------------------


class _Conn(asyncio.Protocol):
    """One WebSocket client connection, parsing frames by hand."""

    def __init__(self, worker: _Worker, index: int, room: str) -> None:
        self.w = worker
        self.index = index
        self.room = room
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_id = -1
        #: sender number -> [distinct messages received, last sequence number]
        self.per_sender: dict[int, list[int]] = {}
        self.close_code: int | None = None
        self.mask = os.urandom(4)
        self._masks: dict[int, int] = {}
        self.paused = False
        self._resume: asyncio.Future[None] | None = None
        # sender bookkeeping
        self.sent = 0
        self.echoed = 0
        self.refused = 0
        self.echo_waiter: asyncio.Future[None] | None = None

    # protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        parts = urlsplit(self.w.cfg.url)
        sep = "&" if parts.query else ""
        target = f"{parts.path or '/'}?{parts.query}{sep}room={self.room}"
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if b" 101 " not in status:
                self._fail(RuntimeError(f"handshake refused: {status.decode(errors='replace')}"))
                return
            del buf[: end + 4]
            self.upgraded = True
        now = time.monotonic_ns()
        pos, n = 0, len(buf)
        on_text = self.w.on_text
        while n - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            if b1 < 126:
                head, length = 2, b1
            elif b1 == 126:
                if n - pos < 4:
                    break
                head, length = 4, int.from_bytes(buf[pos + 2 : pos + 4], "big")
            else:
                if n - pos < 10:
                    break
                head, length = 10, int.from_bytes(buf[pos + 2 : pos + 10], "big")
            end = pos + head + length
            if end > n:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1:
                on_text(self, buf[pos + head : end], now)
            elif opcode == 8:
                payload = bytes(buf[pos + head : end])
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._write_frame(0x88, payload[:2])
                if self.transport is not None:
                    self.transport.close()
            elif opcode == 9:
                self._write_frame(0x8A, bytes(buf[pos + head : end]))
            pos = end
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.close_code is None:
            self.close_code = 1006
        self._fail(ConnectionError("connection lost"))
        if self.echo_waiter is not None and not self.echo_waiter.done():
            self.echo_waiter.set_result(None)
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)

    # sending
    def _write_frame(self, first: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        n = len(payload)
        if n < 126:
            header = bytes((first, 0x80 | n))
        elif n < 65536:
            header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = self._masks.get(n)
        if mask is None:
            mask = self._masks[n] = int.from_bytes((self.mask * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(payload, "big") ^ mask).to_bytes(n, "big")
        self.transport.write(header + self.mask + masked)

    def send_text(self, payload: bytes) -> None:
        self._write_frame(0x81, payload)

    async def writable(self) -> None:
        while self.paused and self.transport is not None:
            self._resume = asyncio.get_running_loop().create_future()
            await self._resume

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._write_frame(0x88, (1000).to_bytes(2, "big"))
            self.transport.close()


class _Worker:
    """The clients of one worker process and what they saw."""

    def __init__(self, cfg: Config, proc: int) -> None:
        self.cfg = cfg
        self.proc = proc
        self.conns: list[_Conn] = []
        self.hist: dict[int, int] = {}
        self.max_ns = 0
        self.dups = 0
        self.disorder = 0
        self.errors = 0
        self.window_deliveries = 0
        self.window_accepted = 0
        self.deliveries = 0
        self.last_recv = 0
        self.first_send = 0
        self.win_lo = 0
        self.win_hi = 2**63
        self.body = base64.b64encode(b"x" * cfg.size).decode()

    def on_text(self, conn: _Conn, payload: bytearray, now: int) -> None:
        frame = orjson.loads(payload)
        kind = frame.get("Type")
        if kind == "Chat":
            msg_id = frame.get("ID", 0)
            if msg_id <= conn.last_id:
                self.disorder += 1
            conn.last_id = msg_id
            sender = frame.get("S")
            if sender is None:
                return
            seq, sent = frame["N"], frame["T"]
            state = conn.per_sender.get(sender)
            if state is None:
                state = conn.per_sender[sender] = [0, -1]
            if seq <= state[1]:
                self.dups += 1
                return
            state[0] += 1
            state[1] = seq
            self.deliveries += 1
            self.last_recv = now
            if self.win_lo <= sent < self.win_hi:
                self.window_deliveries += 1
                latency = now - sent
                bucket = latency // BUCKET_NS
                self.hist[bucket] = self.hist.get(bucket, 0) + 1
                if latency > self.max_ns:
                    self.max_ns = latency
                if sender == conn.index:
                    self.window_accepted += 1
            if sender == conn.index:
                conn.echoed += 1
                self._wake(conn)
        elif kind == "Error":
            self.errors += 1
            conn.refused += 1
            self._wake(conn)
        elif kind == "Status" and not conn.ready.done():
            conn.ready.set_result(None)

    @staticmethod
    def _wake(conn: _Conn) -> None:
        waiter = conn.echo_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def connect(self) -> None:
        cfg = self.cfg
        parts = urlsplit(cfg.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(64)

        async def one(index: int) -> None:
            conn = _Conn(self, index, f"bench-{cfg.room_of(index)}")
            async with gate:
                await loop.create_connection(lambda: conn, host, port)
                await asyncio.wait_for(conn.ready, 30)
            self.conns.append(conn)

        mine = [i for i in range(cfg.clients) if cfg.proc_of(i) == self.proc]
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in mine)), cfg.connect_timeout)
        self.conns.sort(key=lambda c: c.index)

    async def run_sender(self, conn: _Conn, quota: int | None, start: int, end: int) -> None:
        cfg = self.cfg
        prefix = f'{{"Message":"{self.body}","Author":"bench","S":{conn.index},"N":'
        loop = asyncio.get_running_loop()
        clock = time.monotonic_ns
        window = cfg.inflight()
        interval = cfg.senders / cfg.rate if cfg.rate > 0 else 0.0
        # Spread the senders' ticks over one interval instead of sending in bursts.
        next_at = start / 1e9 + interval * (conn.index / max(1, cfg.senders))
        delay = start / 1e9 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        while quota is None or conn.sent < quota:
            if conn.transport is None:
                return
            now = clock()
            if now >= end:
                return
            if interval:
                wait = next_at - now / 1e9
                if wait > 0:
                    await asyncio.sleep(wait)
                next_at += interval
            else:
                while conn.sent - conn.echoed - conn.refused >= window:
                    conn.echo_waiter = loop.create_future()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(conn.echo_waiter, 1.0)
                    if conn.transport is None or clock() >= end:
                        return
            if conn.paused:
                await conn.writable()
            t = clock()
            if not self.first_send:
                self.first_send = t
            conn.send_text(f'{prefix}{conn.sent},"T":{t}}}'.encode())
            conn.sent += 1

    async def run(self, start_ns: int, until_ns: int) -> dict[str, Any]:
        cfg = self.cfg
        senders = [c for c in self.conns if c.index < cfg.senders]
        if cfg.messages:
            self.win_lo, self.win_hi, end = 0, 2**63, 2**63
            base, extra = divmod(cfg.messages, max(1, cfg.senders))
            quotas: list[int | None] = [base + (c.index < extra) for c in senders]
        else:
            self.win_lo = start_ns + int(cfg.warmup * 1e9)
            self.win_hi = end = until_ns
            quotas = [None] * len(senders)
        cpu0, wall0 = time.process_time(), time.monotonic()
        tasks = [
            asyncio.create_task(self.run_sender(c, q, start_ns, end))
            for c, q in zip(senders, quotas, strict=True)
        ]
        if tasks:
            limit = (cfg.duration + cfg.warmup if not cfg.messages else 600) + 30
            _done, pending = await asyncio.wait(tasks, timeout=limit)
            for task in pending:
                task.cancel()
        sending_done = time.monotonic()
        cpu_sending = time.process_time() - cpu0
        # Drain: wait for the echoes, then for a quiet spell with nothing arriving.
        drain_end = time.monotonic() + DRAIN_MAX
        seen = -1
        while time.monotonic() < drain_end:
            await asyncio.sleep(QUIET)
            echoes_due = any(c.sent > c.echoed + c.refused and c.transport for c in senders)
            if self.deliveries == seen and not echoes_due:
                break
            seen = self.deliveries
        return {
            "proc": self.proc,
            "sent": {c.index: c.sent for c in senders},
            "refused": {c.index: c.refused for c in senders},
            "recv": [(c.room, {s: st[0] for s, st in c.per_sender.items()}) for c in self.conns],
            "rooms_of_senders": {c.index: c.room for c in senders},
            "hist": self.hist,
            "max_ns": self.max_ns,
            "dups": self.dups,
            "disorder": self.disorder,
            "errors": self.errors,
            "deliveries": self.deliveries,
            "window_deliveries": self.window_deliveries,
            "window_accepted": self.window_accepted,
            "first_send": self.first_send,
            "last_recv": self.last_recv,
            "closed": [c.close_code for c in self.conns if c.close_code is not None],
            # Share of one core this process used while sending (0 when nothing was sent).
            "cpu_busy": cpu_sending / (sending_done - wall0) if tasks else 0.0,
        }


def _raise_nofile() -> None:
    """Allow as many sockets as the hard limit permits (10,000 idle connections need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _worker_main(cfg: Config, proc: int, ready: Any, go: Any, results: Any) -> None:
    """Entry point of one client process: connect, report ready, wait for go, run, report."""
    _raise_nofile()

    async def main() -> None:
        worker = _Worker(cfg, proc)
        try:
            await worker.connect()
        except Exception as exc:
            ready.put((proc, f"{type(exc).__name__}: {exc}"))
            return
        ready.put((proc, None))
        start_ns, until_ns = await asyncio.to_thread(go.get)
        if start_ns < 0:
            return
        result = await worker.run(start_ns, until_ns)
        results.put(result)
        for conn in worker.conns:
            conn.close()
        await asyncio.sleep(0.05)

    # uvloop when installed: the load generator must cost as little as it can (measured
    # lower client CPU per delivery); the report's "client CPU" says whether it kept up.
    try:
        loop = new_event_loop("uvloop")
    except RuntimeError:
        loop = new_event_loop("asyncio")
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        runner.run(main())


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


def chatlog_argv(port: int, db: Path, synchronous: str, extra: tuple[str, ...]) -> list[str]:
    """The command line of a spawned chatlog server: temp db, heartbeat off, no rate limit."""
    from chatlog.settings import Settings

    argv = [sys.executable, "-m", "chatlog", "serve", "--port", str(port), "--db", str(db)]
    argv += ["--heartbeat", "0", "--synchronous", synchronous]
    if any(f.name == "rate" for f in fields(Settings)):
        argv += ["--rate", "0"]  # the per-connection rate limit would throttle the load
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


def measure(cfg: Config, probe: ServerProbe | None, *, progress: bool = False) -> dict[str, Any]:
    """Run one load against ``cfg.url`` and return the merged figures."""
    _raise_nofile()
    # fork: the coordinator runs no event loop, and the workers start in milliseconds.
    ctx: Any = mp.get_context("fork" if sys.platform == "linux" else "spawn")
    ready, go, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    rss_before = probe.rss() if probe else None
    procs = [
        ctx.Process(target=_worker_main, args=(cfg, p, ready, go, results), daemon=True)
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
            if rss_connected is not None and rss_before is not None and cfg.clients
            else None
        ),
    }
    return result


@dataclass
class Target:
    """A server to measure: spawned by the bench or reached at ``--url``."""

    name: str
    make: Callable[[], tuple[str, Spawned | None, ServerProbe | None]]
    runs: list[dict[str, Any]] = field(default_factory=list)


def _median(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != len(values) or not numbers:
        return values[0] if values else None
    return statistics.median(numbers)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-field medians over repeated runs; loss counters are summed, never hidden."""
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [r[key] for r in runs]
        if key in ("lost", "duplicates", "out_of_order", "refused"):
            out[key] = sum(values)
        elif key == "client_saturated":
            out[key] = any(values)
        elif isinstance(first, dict) and key == "latency_ms":
            out[key] = {k: _median([v[k] for v in values]) for k in first}
        elif isinstance(first, dict):
            merged: dict[str, int] = {}
            for value in values:
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v
            out[key] = merged
        else:
            out[key] = _median(values)
    return out


ROWS: tuple[tuple[str, str, str], ...] = (
    ("msgs/s accepted", "msgs_per_s", "{:,.0f}"),
    ("deliveries/s", "deliveries_per_s", "{:,.0f}"),
    ("latency p50 ms", "latency_ms.p50", "{:.2f}"),
    ("latency p90 ms", "latency_ms.p90", "{:.2f}"),
    ("latency p99 ms", "latency_ms.p99", "{:.2f}"),
    ("latency max ms", "latency_ms.max", "{:.2f}"),
    ("server CPU µs/delivery", "server_cpu_us_per_delivery", "{:.2f}"),
    ("server CPU (cores)", "server_cpu_util", "{:.2f}"),
    ("server peak RSS MiB", "server_peak_rss_mib", "{:.1f}"),
    ("server RSS KiB/connection", "server_rss_kib_per_connection", "{:.1f}"),
    ("client CPU (busiest proc)", "client_cpu_busy", "{:.2f}"),
    ("rows per commit", "rows_per_commit", "{:.1f}"),
    ("commit ms (mean)", "commit_ms", "{:.2f}"),
    ("lost", "lost", "{}"),
    ("duplicates", "duplicates", "{}"),
    ("out of order", "out_of_order", "{}"),
    ("refused", "refused", "{}"),
)
#: Ratios worth reporting (chatlog / baseline); latency ratios: lower is better.
RATIOS = (
    "msgs_per_s",
    "deliveries_per_s",
    "latency_ms.p50",
    "latency_ms.p99",
    "server_cpu_us_per_delivery",
)


def _get(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fmt(fmt: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def render(cfg: Config, summaries: dict[str, dict[str, Any]], ratios: dict[str, Any]) -> str:
    """The report as a plain text table."""
    names = list(summaries)
    lines = [
        f"clients={cfg.clients} senders={cfg.senders} rooms={cfg.rooms} size={cfg.size} B "
        f"rate={'unlimited' if not cfg.rate else f'{cfg.rate:g}/s'} "
        + (f"messages={cfg.messages}" if cfg.messages else f"duration={cfg.duration:g} s")
        + f" procs={cfg.procs} window={cfg.inflight() if not cfg.rate else '-'}"
    ]
    header = ["", *names] + (["ratio"] if ratios else [])
    rows = [header]
    for label, path, fmt in ROWS:
        row = [label] + [_fmt(fmt, _get(summaries[n], path)) for n in names]
        if ratios:
            row.append(_fmt("{:.2f}x", ratios.get(path)))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def notes_for(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Warnings the reader must see next to the figures."""
    notes = []
    for name, s in summaries.items():
        if s["client_saturated"]:
            notes.append(
                f"{name}: a client process was saturated (CPU {s['client_cpu_busy']:.2f}); "
                "the figures are the load generator's limit, not the server's: try --procs"
            )
        if s["lost"] or s["duplicates"] or s["out_of_order"]:
            notes.append(
                f"{name}: {s['lost']} lost, {s['duplicates']} duplicated, "
                f"{s['out_of_order']} out of order"
            )
        if s["server_closes"]:
            notes.append(f"{name}: server closed clients with codes {s['server_closes']}")
    return notes


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
) -> dict[str, Any]:
    """Measure chatlog (and the baseline) ``repeat`` times, alternating, and summarise."""
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
            argv = [sys.executable, "-m", "chatlog.baseline", "--port", str(port)]
            server = Spawned(argv, port, workdir / "baseline.log", env)
            return server.url, server, ServerProbe(server.proc.pid)

        def external() -> tuple[str, Spawned | None, ServerProbe | None]:
            return cfg.url, None, ServerProbe(pid) if pid else None

        targets.append(Target("chatlog", spawn_chatlog if spawn else external))
        if baseline:
            targets.append(Target("baseline", spawn_baseline))
        for i in range(repeat):
            for target in targets:
                url, server, probe = target.make()
                try:
                    if server:
                        server.wait_ready()
                    echo(f"run {i + 1}/{repeat}: {target.name} at {url}")
                    target.runs.append(measure(replace(cfg, url=url), probe))
                finally:
                    if server:
                        server.stop()
        summaries = {t.name: summarise(t.runs) for t in targets}
        ratios: dict[str, Any] = {}
        if baseline:
            for path in RATIOS:
                a, b = _get(summaries["chatlog"], path), _get(summaries["baseline"], path)
                if isinstance(a, int | float) and isinstance(b, int | float) and b:
                    ratios[path] = a / b
        return {
            "config": asdict(cfg),
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
) -> None:
    """Load a chat server with N clients and report throughput, latency, CPU and losses.

    With --spawn the bench starts chatlog itself on a temporary database (heartbeat off);
    with --baseline it also starts a bare broadcast server that stores nothing and reports
    chatlog's figures as ratios of it. Every run checks that no message was lost, repeated
    or reordered. Use 127.0.0.1 and bounded runs: this is a load generator.

    \b
    Example:
        chatlog bench --spawn --baseline --clients 100 --senders 10 --duration 4 --repeat 3
    """
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
    )
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(render(cfg, report["results"], report["ratios"]))
    for note in report["notes"]:
        click.echo(f"note: {note}")
