"""``GET /metrics``, ``GET /healthz`` and ``GET /readyz``: what an orchestrator polls."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from chatlog.log import migrate
from chatlog.server.keys import METRICS, RUNTIME
from chatlog.server.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)

#: Seconds /readyz waits for the writer before calling the server not ready.
READY_TIMEOUT = 2.0


def add_routes(app: web.Application) -> None:
    """Register the three endpoints on ``app``."""
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz_handler)
    app.router.add_get("/readyz", readyz_handler)


async def metrics_handler(request: web.Request) -> web.Response:
    """The app's registry in the Prometheus text format."""
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def healthz_handler(request: web.Request) -> web.Response:
    """200 while the process serves HTTP at all (liveness)."""
    return web.json_response({"status": "ok"})


async def readyz_handler(request: web.Request) -> web.Response:
    """200 when the writer can take the write lock and the schema is at the newest revision.

    The check runs as a writer operation, so it proves what a message needs: the single
    writer is alive, ``BEGIN IMMEDIATE`` succeeds (the file is writable and not locked out)
    and the migrations are at head.
    """
    runtime = request.app.get(RUNTIME)
    if runtime is None:
        return web.json_response({"status": "starting"}, status=503)
    try:
        head = await asyncio.to_thread(migrate.head)
        current = await asyncio.wait_for(
            runtime.writer.execute(migrate.schema_revision), READY_TIMEOUT
        )
    except Exception as exc:
        log.warning("not ready: %s: %s", type(exc).__name__, exc)
        return web.json_response(
            {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"}, status=503
        )
    if current != head:
        return web.json_response(
            {"status": "unmigrated", "revision": current, "head": head}, status=503
        )
    return web.json_response({"status": "ready", "revision": current})
