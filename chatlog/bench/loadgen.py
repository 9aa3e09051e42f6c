"""The client side of ``chatlog bench``: the load, the sockets, and what each client saw.

N clients join R rooms; M of them send chat messages whose extra keys carry the sender's
number ``S``, a per-sender sequence number ``N`` and the send time ``T``
(``time.monotonic_ns``: CLOCK_MONOTONIC is system-wide on Linux, so several client processes
share one clock); with ``Config.nonce`` each also carries a unique ``Nonce``, as the chat
page's messages do. Every client checks, per sender, that sequence numbers arrive once and
in order and that IDs only grow. Each client process runs :func:`worker_main`; its sockets
are the minimal protocol of :mod:`chatlog.bench.wsclient`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import random
import resource
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from chatlog.bench.wsclient import WebSocketClient
from chatlog.loops import new_event_loop

#: Width of a latency histogram bucket, in nanoseconds (10 µs).
BUCKET_NS = 10_000
#: Deliveries in flight the closed loop aims for when no ``--window`` is given.
INFLIGHT_TARGET = 10_000
#: Seconds of silence after the last send that end the drain phase.
QUIET = 0.3
#: Most seconds the drain phase may last.
DRAIN_MAX = 10.0
#: A retry repeats one of the sender's last this many messages, answered or still in flight
#: (so a retry meets its original both in the log and in the same commit batch).
RECENT = 32


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
    #: Several servers sharing one database: clients connect round-robin over them.
    urls: tuple[str, ...] = ()
    #: Every message carries a unique ``Nonce``, as the chat page's do.
    nonce: bool = False
    #: Share of sends that repeat a recent message, same bytes and nonce (needs ``nonce``).
    retry_share: float = 0.0
    #: Rooms are ``<prefix>-<i>``: ``bench`` on a spawned server, ``bench-<run id>`` on a
    #: target at ``--url``, so its rows are recognisably bench data.
    room_prefix: str = "bench"

    def url_of(self, index: int) -> str:
        """The server client ``index`` connects to."""
        return self.urls[index % len(self.urls)] if self.urls else self.url

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


class _Conn(WebSocketClient):
    """One client: what it saw of each sender, and, if it sends, its own bookkeeping."""

    def __init__(self, worker: _Worker, index: int, room: str) -> None:
        super().__init__(worker.cfg.url_of(index), room)
        self.w = worker
        self.index = index
        self.last_id = -1
        #: sender number -> [distinct messages received, last sequence number]
        self.per_sender: dict[int, list[int]] = {}
        # sender bookkeeping
        self.sent = 0
        self.echoed = 0
        self.refused = 0
        self.echo_waiter: asyncio.Future[None] | None = None
        # retries: the last RECENT (seq, frame) sent, retries awaiting an answer by seq, and
        # the IDs this client's own messages came back with (of recent or pending seqs only)
        self.recent: deque[tuple[int, bytes]] = deque(maxlen=RECENT)
        self.pending: dict[int, int] = {}
        self.own_ids: dict[int, int] = {}
        self.retries = 0
        self.retries_answered = 0
        self.retries_same_id = 0

    def unanswered(self) -> int:
        """Sends, retries included, that got neither their Chat frame nor an Error yet."""
        return self.sent + self.retries - self.echoed - self.retries_answered - self.refused

    def on_text(self, payload: bytearray, now: int) -> None:
        w = self.w
        frame = orjson.loads(payload)
        kind = frame.get("Type")
        if kind == "Chat":
            msg_id = frame.get("ID", 0)
            sender = frame.get("S")
            if self.pending and sender == self.index and self._retry_answer(frame["N"], msg_id):
                return
            if msg_id <= self.last_id:
                w.disorder += 1
            self.last_id = msg_id
            if sender is None:
                return
            seq, sent = frame["N"], frame["T"]
            state = self.per_sender.get(sender)
            if state is None:
                state = self.per_sender[sender] = [0, -1]
            if seq <= state[1]:
                w.dups += 1
                return
            state[0] += 1
            state[1] = seq
            w.deliveries += 1
            w.last_recv = now
            if w.win_lo <= sent < w.win_hi:
                w.window_deliveries += 1
                latency = now - sent
                bucket = latency // BUCKET_NS
                w.hist[bucket] = w.hist.get(bucket, 0) + 1
                if latency > w.max_ns:
                    w.max_ns = latency
                if sender == self.index:
                    w.window_accepted += 1
            if sender == self.index:
                self.echoed += 1
                if self.recent and (seq >= self.sent - RECENT or seq in self.pending):
                    self.own_ids[seq] = msg_id
                self.wake()
        elif kind == "Error":
            w.errors += 1
            self.refused += 1
            self.wake()
        elif kind == "Status" and not self.ready.done():
            self.ready.set_result(None)

    def _retry_answer(self, seq: int, msg_id: int) -> bool:
        """Count the Chat frame of own message ``seq`` as a retry's answer if it is one: the
        server answers a retry only after the original's frame, to the retrier alone."""
        mine = self.per_sender.get(self.index)
        waiting = self.pending.get(seq, 0)
        if mine is None or seq > mine[1] or not waiting:
            return False  # the original's frame, or (seen twice, nothing pending) a duplicate
        if waiting > 1:
            self.pending[seq] = waiting - 1
        else:
            del self.pending[seq]
        self.retries_answered += 1
        if self.own_ids.get(seq) == msg_id:
            self.retries_same_id += 1
        if seq < self.sent - RECENT and seq not in self.pending:
            self.own_ids.pop(seq, None)
        self.wake()
        return True

    def send_fresh(self, seq: int, frame: bytes, retrying: bool) -> None:
        """Send a new message, remembered for retries when ``retrying``."""
        self.send_text(frame)
        self.sent += 1
        if retrying:
            self.recent.append((seq, frame))
            if seq - RECENT not in self.pending:
                self.own_ids.pop(seq - RECENT, None)

    def send_retry(self, seq: int, frame: bytes) -> None:
        """Send message ``seq`` again, byte for byte, as a client whose ack was lost would."""
        self.pending[seq] = self.pending.get(seq, 0) + 1
        self.retries += 1
        self.send_text(frame)

    def wake(self) -> None:
        """Wake the sender waiting for an answer (its window is full)."""
        waiter = self.echo_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.wake()


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
        # Nonces start with a token of this process: unique across runs, so a server at
        # --url that keeps its log never takes a new message for a retry of an old one.
        self.token = secrets.token_hex(4)

    async def connect(self) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(64)

        async def one(index: int) -> None:
            parts = urlsplit(cfg.url_of(index))
            host, port = parts.hostname or "127.0.0.1", parts.port or 80
            conn = _Conn(self, index, f"{cfg.room_prefix}-{cfg.room_of(index)}")
            async with gate:
                await loop.create_connection(lambda: conn, host, port)
                await asyncio.wait_for(conn.ready, 30)
            self.conns.append(conn)

        mine = [i for i in range(cfg.clients) if cfg.proc_of(i) == self.proc]
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in mine)), cfg.connect_timeout)
        self.conns.sort(key=lambda c: c.index)

    async def run_sender(self, conn: _Conn, quota: int | None, start: int, end: int) -> None:
        cfg = self.cfg
        # One bytes template per sender, formatted per message (the body is base64 and the
        # token hex: neither holds a %).
        head = f'{{"Message":"{self.body}","Author":"bench","S":{conn.index},'
        if cfg.nonce:
            template = f'{head}"Nonce":"{self.token}-{conn.index}-%d","N":%d,"T":%d}}'.encode()
        else:
            template = f'{head}"N":%d,"T":%d}}'.encode()
        share = cfg.retry_share
        rng = random.Random(conn.index)
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
                while conn.unanswered() >= window:
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
            if share and conn.recent and rng.random() < share:
                conn.send_retry(*rng.choice(conn.recent))
            else:
                seq = conn.sent
                frame = template % (seq, seq, t) if cfg.nonce else template % (seq, t)
                conn.send_fresh(seq, frame, bool(share))

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
            echoes_due = any(c.unanswered() > 0 and c.transport for c in senders)
            if self.deliveries == seen and not echoes_due:
                break
            seen = self.deliveries
        return {
            "proc": self.proc,
            "sent": {c.index: c.sent for c in senders},
            "refused": {c.index: c.refused for c in senders},
            "retries": sum(c.retries for c in senders),
            "retries_answered": sum(c.retries_answered for c in senders),
            "retries_same_id": sum(c.retries_same_id for c in senders),
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


def raise_nofile() -> None:
    """Allow as many sockets as the hard limit permits (10,000 idle connections need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker_main(cfg: Config, proc: int, ready: Any, go: Any, results: Any) -> None:
    """Entry point of one client process: connect, report ready, wait for go, run, report."""
    raise_nofile()

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
