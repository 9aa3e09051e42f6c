"""The typed app keys, declared in one place, and the runtime state they hold."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from chatlog.log.backend import Feed, LogBackend
from chatlog.log.writer import Writer
from chatlog.server.answers import AnswerBudget
from chatlog.server.guard import Guard
from chatlog.server.hub import Hub
from chatlog.server.metrics import Metrics
from chatlog.settings import Settings


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a running server shares between its handlers; built by ``app.runtime_ctx``."""

    settings: Settings
    #: The log (SQLite or PostgreSQL, behind one interface).
    log: LogBackend
    writer: Writer
    hub: Hub
    #: The log's epoch (``meta.epoch``), sent to clients so they notice a replaced database.
    epoch: str
    #: This process's id in ``websocket_connections.node``.
    node: str
    #: The app's metrics (the same object as ``app[METRICS]``).
    metrics: Metrics
    #: Delivers commits and presence changes: in-process (SQLite) or through PostgreSQL.
    feed: Feed
    #: The server-wide budget of large answers (History, resume) in flight.
    answers: AnswerBudget


SETTINGS = web.AppKey("settings", Settings)
RUNTIME = web.AppKey("runtime", Runtime)
METRICS = web.AppKey("metrics", Metrics)
#: The pre-upgrade checks and connection counts (Origin, token, caps).
GUARD = web.AppKey("guard", Guard)
