"""Prometheus metrics of one server, in a registry of its own (never the global one).

The hot path (every delivery, every received frame) only bumps plain integers on the hub,
the writer and :class:`Metrics`; a custom collector turns them into counters when
``/metrics`` is scraped, so a busy server pays no lock per delivery. Rarer events (commits,
errors, resumes) use prometheus-client's own histograms and counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chatlog.log.backend import LogBackend
from chatlog.log.writer import Writer
from chatlog.server.answers import AnswerBudget
from chatlog.server.hub import Hub

#: Content type of the Prometheus text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Every metric of one app; created by ``create_app`` and stored under ``keys.METRICS``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        #: Text frames received from clients (bumped per frame; exported at scrape time).
        self.frames_in = 0
        #: What the live counters are read from while the server runs.
        self.live: Live | None = None
        self.commit_rows = Histogram(
            "chatlog_commit_batch_rows",
            "Messages per group commit.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "chatlog_commit_seconds",
            "Duration of one group commit (BEGIN IMMEDIATE to COMMIT), in seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "chatlog_errors",
            "Refused frames and failures, by kind (the error codes of the wire protocol).",
            ["kind"],
            registry=self.registry,
        )
        self.slow_closes = Counter(
            "chatlog_slow_consumer_closes",
            "Clients closed with 1013 because their outgoing queue overflowed.",
            registry=self.registry,
        )
        self.resumes = Counter(
            "chatlog_resume_requests",
            "Connections that asked to resume with ?since=.",
            registry=self.registry,
        )
        self.replayed = Counter(
            "chatlog_resume_rows_replayed",
            "Stored messages sent to resuming clients.",
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(self))

    def attach(
        self, hub: Hub, writer: Writer, log: LogBackend, answers: AnswerBudget | None = None
    ) -> None:
        """Start exporting the live counters of a running server (called by ``runtime_ctx``)."""
        self.live = Live(hub, writer, log, answers)

    def detach(self) -> None:
        self.live = None

    def observe_commit(self, rows: int, seconds: float) -> None:
        """Record one group commit (the writer's ``on_stats`` hook)."""
        self.commit_rows.observe(rows)
        self.commit_seconds.observe(seconds)

    def exposition(self) -> bytes:
        """The whole registry in the Prometheus text format."""
        return generate_latest(self.registry)


@dataclass(frozen=True, slots=True)
class Live:
    """The running server's parts whose plain integers ``/metrics`` reads."""

    hub: Hub
    writer: Writer
    log: LogBackend
    answers: AnswerBudget | None = None


class _LiveCollector(Collector):
    """Reads the hot-path integers of the hub and writer when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        live = self._metrics.live
        hub = live.hub if live is not None else None
        writer = live.writer if live is not None else None
        yield GaugeMetricFamily(
            "chatlog_connections", "Open WebSocket connections.", value=len(hub) if hub else 0
        )
        yield CounterMetricFamily(
            "chatlog_frames_in", "Text frames received from clients.", value=self._metrics.frames_in
        )
        yield CounterMetricFamily(
            "chatlog_messages_persisted",
            "Chat messages committed to the log.",
            value=writer.rows if writer else 0,
        )
        yield CounterMetricFamily(
            "chatlog_commits",
            "Group commits of chat messages.",
            value=writer.commits if writer else 0,
        )
        yield CounterMetricFamily(
            "chatlog_messages_out",
            "Committed chat messages fanned out to a room.",
            value=hub.published if hub else 0,
        )
        yield CounterMetricFamily(
            "chatlog_deliveries",
            "Chat frames queued to sockets (messages x recipients).",
            value=hub.delivered if hub else 0,
        )
        for gauge in live.log.gauges() if live is not None else ():
            family = CounterMetricFamily if gauge.counter else GaugeMetricFamily
            yield family(gauge.name, gauge.help, value=gauge.value)
        yield CounterMetricFamily(
            "chatlog_fanout_queue_drops",
            "Outgoing batches dropped because a client's queue was full or it was closing.",
            value=hub.stats.drops if hub else 0,
        )
        yield GaugeMetricFamily(
            "chatlog_client_queue_peak_bytes",
            "The most bytes one client has had queued or held back (--client-queue-bytes).",
            value=hub.stats.peak_queued_bytes if hub else 0,
        )
        yield GaugeMetricFamily(
            "chatlog_client_queued_bytes",
            "Bytes queued, held back or buffered for all clients now.",
            value=sum(c.held_bytes() for c in hub.clients()) if hub else 0,
        )
        answers = live.answers if live is not None else None
        yield GaugeMetricFamily(
            "chatlog_answers_in_flight",
            "History answers and resume backlogs being written now (--answer-budget-bytes).",
            value=answers.in_flight if answers else 0,
        )
        yield CounterMetricFamily(
            "chatlog_answers_busy",
            "History requests refused with a busy Error frame (answer budget full).",
            value=answers.refused if answers else 0,
        )
