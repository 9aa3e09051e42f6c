"""``chatlog serve``: run the chat server (the database is created and migrated first)."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from aiohttp import web

from chatlog.cli.common import build_settings, db_option, db_url
from chatlog.cli.listen import check_port, start_line
from chatlog.cli.serve_options import security_options, security_overrides
from chatlog.log.open import describe, opened
from chatlog.loops import EVENT_LOOPS, new_event_loop
from chatlog.server import descriptors
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
@click.option(
    "--client-queue-bytes", type=int, help="Outgoing bytes a slow client may owe (4194304)."
)
@click.option(
    "--answer-budget-bytes",
    type=int,
    help="Bytes all History/resume answers in flight may take (67108864).",
)
@click.option("--resume-max", type=int, help="Most messages one resume sends (10000).")
@click.option("--heartbeat", type=float, help="Seconds between pings; 0 turns them off (30).")
@click.option("--retain-days", type=float, help="Delete messages older than this many days.")
@click.option("--retain-messages", type=int, help="Keep only the newest N messages per room.")
@click.option(
    "--edit-window",
    type=float,
    help="Seconds after sending that an author may edit or delete a message (no limit).",
)
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
    check_port(settings.host, settings.port)  # before the database is created or migrated
    setup_logging(settings.log_format, settings.log_level)
    revision = asyncio.run(_preflight(settings))
    database = describe(settings.url)[0]
    try:
        loop = new_event_loop(settings.event_loop)
    except RuntimeError as exc:  # uvloop asked for but not installed; the message says so
        raise click.ClickException(str(exc)) from None
    # Sockets stay below the descriptor limit: a crowd gets 503, not EMFILE on accept().
    nofile = descriptors.raise_nofile()
    cap = descriptors.connection_cap(settings.max_connections, nofile)
    if cap != settings.max_connections:
        click.echo(
            f"max-connections is {cap}: the open-file limit is {nofile}, "
            f"{descriptors.reserve(nofile)} kept for the database and the listener",
            err=True,
        )
        settings = settings.replace(max_connections=cap)
    loop.set_exception_handler(descriptors.AcceptErrorLog())
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # aiohttp's banner, replaced by one line saying what is served where.
        print=lambda text: click.echo(start_line(settings, text, database, revision), err=True),
        shutdown_timeout=10.0,
        loop=loop,
        # aiohttp arms this timer when a connection opens and closes it if no complete
        # request has arrived by then: the handshake deadline (slowloris guard).
        keepalive_timeout=settings.handshake_timeout,
        access_log_class=RedactingAccessLogger,
    )


async def _preflight(settings: Settings) -> str | None:
    """Open and migrate the database once before listening, so a bad --db fails at once;
    return its schema revision."""
    async with opened(settings.url, synchronous=settings.synchronous) as log:
        return await log.revision()
