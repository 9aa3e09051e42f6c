"""``chatlog purge`` and ``chatlog vacuum``: retention by hand, and reclaiming the space."""

from __future__ import annotations

import asyncio

import click

from chatlog.cli.common import db_option, db_url
from chatlog.cli.schema import check_before_writing
from chatlog.log.open import open_log
from chatlog.log.retention import Policy, PurgeReport, purge


async def _purge(url: str, policy: Policy, room: str | None) -> PurgeReport:
    await check_before_writing(url)
    log = open_log(url, access="write")
    try:
        return await purge(log, policy, room=room)
    finally:
        await log.dispose()


async def _vacuum(url: str) -> None:
    await check_before_writing(url)
    log = open_log(url, access="write")
    try:
        await log.vacuum()
    finally:
        await log.dispose()


@click.command(name="purge")
@db_option()
@click.option("--retain-days", type=float, help="Delete messages older than this many days.")
@click.option("--retain-messages", type=int, help="Keep only the newest N messages per room.")
@click.option("--room", help="Only this room.")
def purge_command(
    db: str | None, retain_days: float | None, retain_messages: int | None, room: str | None
) -> None:
    """Delete old messages in small batches (safe while the server runs).

    IDs are never reused; resume and replay report that history before the cut is gone.

    \b
    Example:
        chatlog purge --db chat.db --retain-days 30 --retain-messages 100000
    """
    policy = Policy(days=retain_days, messages=retain_messages)
    if not policy.active:
        raise click.UsageError("say what to keep: --retain-days and/or --retain-messages")
    if (retain_days is not None and retain_days <= 0) or (
        retain_messages is not None and retain_messages < 1
    ):
        raise click.UsageError("--retain-days must be positive and --retain-messages at least 1")
    report = asyncio.run(_purge(db_url(db), policy, room))
    floors = ", ".join(f"{name} through {newest}" for name, newest in sorted(report.floors.items()))
    click.echo(
        f"removed {report.messages} messages and {report.errors} errors"
        + (f" ({floors})" if floors else "")
    )


@click.command(name="vacuum")
@db_option()
def vacuum_command(db: str | None) -> None:
    """Give the space of deleted rows back to the file system (run after a large purge).

    \b
    Example:
        chatlog vacuum --db chat.db
    """
    url = db_url(db)
    asyncio.run(_vacuum(url))
    click.echo("vacuumed")
