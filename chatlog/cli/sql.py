"""``chatlog sql``: one SQL statement against the log, read-only, in any output format."""

from __future__ import annotations

import asyncio
import sys
from typing import IO, Any

import click

from chatlog.cli.common import db_option, db_url
from chatlog.cli.errors import BadInput
from chatlog.cli.schema import require_current
from chatlog.history import output
from chatlog.history import params as params_
from chatlog.log import readonly as reader
from chatlog.log.open import open_reader

#: Seconds a `chatlog sql` statement may run unless --timeout says otherwise.
SQL_TIMEOUT = 60.0


async def _run_sql(
    url: str,
    query: str,
    params: dict[str, Any],
    fmt: str,
    out: IO[bytes],
    limit_s: float | None,
) -> None:
    backend = open_reader(url)
    try:
        await require_current(backend)
        async with backend.read_only(limit_s=limit_s) as log:
            alarm = await log.interrupt_after(limit_s) if limit_s is not None else None
            try:
                bound = {k: params_.bindable(v, log.bind_time) for k, v in params.items()}
                columns, batches = await log.run(query, bound)
                await output.write_rows(columns, batches, fmt, out)
            except Exception as exc:
                if backend.driver_error(exc) is None:
                    raise
                # The database opened, so this is the query's failure (or its --timeout).
                raise click.ClickException(reader.explain(exc, timeout=limit_s)) from None
            except asyncio.CancelledError:
                # Ctrl-C: SQLite's thread would run the statement on, and closing the
                # connection waits for it; stop it there too.
                await log.interrupt_after(0)
                raise
            finally:
                if alarm is not None:
                    alarm.cancel()
    finally:
        await backend.dispose()


@click.command(name="sql")
@click.argument("query")
@db_option()
@output.format_option()
@click.option(
    "--param",
    "-p",
    "params",
    nargs=2,
    multiple=True,
    metavar="NAME[:TYPE] VALUE",
    help="Bind :NAME in the query to VALUE, as text unless TYPE is int, float, date or "
    "datetime (-p n:int 5, -p day:date 2026-12-02). Repeatable.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=SQL_TIMEOUT,
    show_default=True,
    help="Stop the query after this many seconds; 0: no limit.",
)
def sql_command(
    query: str,
    db: str | None,
    fmt: str | None,
    params: tuple[tuple[str, str], ...],
    timeout: float,
) -> None:
    """Run one SQL statement against the log, read-only.

    The log is opened so that no statement can write or change the schema; one that tries fails
    with a clear message and nothing changes. The tables are described in the README.

    \b
    Example:
        chatlog sql --db chat.db "SELECT author, count(*) AS n FROM messages GROUP BY author"
        chatlog sql --db chat.db -p room lobby --format csv \\
            "SELECT id, author, text FROM messages WHERE room = :room"
    """
    if not query.strip():
        raise BadInput(
            'the query is empty; give one SQL statement, e.g. "SELECT count(*) FROM messages"'
        )
    out = sys.stdout.buffer
    bound = dict(params_.parse_param(name, value) for name, value in params)
    url = db_url(db)
    chosen = output.choose_format(fmt, out)
    limit = timeout or None
    asyncio.run(_run_sql(url, query, bound, chosen, output.for_terminal(out), limit))
