"""``chatlog serve``: run the chat server (the database is created and migrated first)."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from aiohttp import web

from chatlog.cli.common import build_settings, db_option, db_url
from chatlog.cli.serve_options import security_options, security_overrides
from chatlog.log.open import opened
from chatlog.loops import EVENT_LOOPS, new_event_loop
from chatlog.server.app import create_app
from chatlog.server.guard import RedactingAccessLogger
from chatlog.server.logs import setup_logging
from chatlog.settings import SYNCHRONOUS_LEVELS, Settings


@click.command(name="serve")
@click.option("--host", help="Address to listen on (default 127.0.0.1). Env: CHATLOG_HOST.")
@click.option("--port", type=int, help="Port to listen on (default 8080). Env: CHATLOG_PORT.")
@db_option()
@click.option(
    "--max-message-bytes",
    type=int,
    help="Largest text frame accepted; larger closes with 1009 (default 65536).",
)
@click.option(
    "--synchronous",
    type=click.Choice(SYNCHRONOUS_LEVELS, case_sensitive=False),
    help="SQLite durability (default FULL: every commit survives power loss).",
)
@click.option("--client-queue", type=int, help="Outgoing batches a slow client may owe (1024).")
@click.option("--resume-max", type=int, help="Most messages one resume sends (10000).")
@click.option("--heartbeat", type=float, help="Seconds between pings; 0 turns them off (30).")
@click.option("--retain-days", type=float, help="Delete messages older than this many days.")
@click.option("--retain-messages", type=int, help="Keep only the newest N messages per room.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log line format.")
@click.option("--event-loop", type=click.Choice(EVENT_LOOPS), help="asyncio (default) or uvloop.")
@security_options
@click.option("--node-heartbeat", type=float, help="Seconds between node heartbeats (2).")
@click.option("--node-timeout", type=float, help="Silent seconds until a node is swept (10).")
def serve_command(**flags: Any) -> None:
    """Run the chat server; the database is created and migrated on start.

    Every flag can also be set with an environment variable CHATLOG_<FLAG>.

    \b
    Example:
        chatlog serve --host 0.0.0.0 --port 8080 --db chat.db
    """
    settings = build_settings(**security_overrides(flags))
    db_url(settings.db)  # a bad URL or a directory is a one-line error before logging starts
    setup_logging(settings.log_format, settings.log_level)
    asyncio.run(_preflight(settings))
    try:
        loop = new_event_loop(settings.event_loop)
    except RuntimeError as exc:  # uvloop asked for but not installed; the message says so
        raise click.ClickException(str(exc)) from None
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=lambda text: click.echo(text, err=True),
        shutdown_timeout=10.0,
        loop=loop,
        # aiohttp arms this timer when a connection opens and closes it if no complete
        # request has arrived by then: the handshake deadline (slowloris guard).
        keepalive_timeout=settings.handshake_timeout,
        access_log_class=RedactingAccessLogger,
    )


async def _preflight(settings: Settings) -> None:
    """Open and migrate the database once before listening, so a bad --db fails at once."""
    async with opened(settings.url, synchronous=settings.synchronous):
        pass
