"""The aiohttp application factory. ``create_app`` does no I/O; resources open in cleanup_ctx.

The data path: a frame arrives on a socket (:mod:`.connection`), :mod:`chatlog.protocol`
parses it, the single :class:`~chatlog.log.writer.Writer` commits it to the log, and the log's
feed hands the committed rows to the :class:`~.hub.Hub`, which fans them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

from aiohttp import web

from chatlog import protocol
from chatlog.log.backend import Node
from chatlog.log.model import NewMessage
from chatlog.log.open import opened
from chatlog.log.retention import Policy, run_periodically
from chatlog.log.writer import Writer
from chatlog.server import api, health, page
from chatlog.server.answers import AnswerBudget
from chatlog.server.connection import websocket_handler
from chatlog.server.guard import Guard
from chatlog.server.hosts import HostAllowlist
from chatlog.server.hub import Hub, HubListener, watch_stalled
from chatlog.server.keys import GUARD, METRICS, RUNTIME, SETTINGS, Runtime
from chatlog.server.metrics import Metrics
from chatlog.settings import Settings

log = logging.getLogger(__name__)

#: The original client connects here (``Chat.Server.cls`` in the CSP application ``/csp/user``).
IRIS_PATH = "/csp/user/Chat.Server.cls"


def create_app(settings: Settings) -> web.Application:
    """Build the chat server for ``settings``; the database opens when the app starts."""
    # Every request is checked against the Host allowlist first (DNS rebinding).
    hosts = HostAllowlist(settings.host, settings.allowed_hosts)
    app = web.Application(middlewares=[hosts.middleware()])
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[GUARD] = Guard(settings)
    app.cleanup_ctx.append(runtime_ctx)
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get(IRIS_PATH, websocket_handler)
    health.add_routes(app)
    page.add_routes(app)
    if settings.api_key is not None:
        api.add_routes(app)
    return app


async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the log, sweep connections a crash left behind, run the writer; then drain it."""
    settings = app[SETTINGS]
    async with opened(settings.url, synchronous=settings.synchronous) as backend:
        hub = Hub()
        metrics = app[METRICS]
        node = secrets.token_hex(8)
        feed = backend.feed(
            HubListener(hub),
            Node(
                node,
                address=f"{settings.host}:{settings.port}",
                heartbeat=settings.node_heartbeat,
                timeout=settings.node_timeout,
            ),
        )
        # Clears what a crash left (SQLite: every connection row; PostgreSQL: dead nodes').
        await feed.prepare()

        def failed(batch: list[NewMessage], exc: BaseException) -> None:
            metrics.errors.labels("store-failed").inc(len(batch))
            frame = protocol.error_frame(
                "store-failed", f"the message was not stored ({type(exc).__name__})"
            )
            for message in batch:
                client = hub.find(message.room, message.ws_id)
                if client is not None:
                    client.send(frame)

        writer = Writer(
            backend,
            feed.committed,
            failed,
            batch_max=settings.batch_max,
            on_stats=metrics.observe_commit,
        )
        await writer.start()
        await feed.start()
        app[RUNTIME] = Runtime(
            settings=settings,
            log=backend,
            writer=writer,
            hub=hub,
            epoch=await backend.epoch(),
            node=node,
            metrics=metrics,
            feed=feed,
            answers=AnswerBudget(settings.answer_budget_bytes),
        )
        metrics.attach(hub, writer, backend, app[RUNTIME].answers)
        retention_task = None
        policy = Policy(days=settings.retain_days, messages=settings.retain_messages)
        if policy.active:
            retention_task = asyncio.create_task(
                run_periodically(backend, writer.execute, policy, settings.retain_every)
            )
        # Slow consumers whose socket stopped taking writes (send deadline).
        watchdog = asyncio.create_task(watch_stalled(hub, settings.send_timeout))
        try:
            yield
        finally:
            metrics.detach()
            watchdog.cancel()
            if retention_task is not None:
                retention_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention_task
            # Sockets are closed by on_shutdown; commit whatever was received before it.
            await writer.close()
            await feed.close()


async def _close_sockets(app: web.Application) -> None:
    runtime = app.get(RUNTIME)
    if runtime is not None:
        await runtime.hub.close_all(protocol.CLOSE_GOING_AWAY, "server shutting down")
