"""``chatlog redact`` and ``chatlog erase``: take messages back from outside the chat.

Both append deletion events through :mod:`chatlog.log.erasure`, so running servers deliver
them like any other row, and both print every message they changed.
"""

from __future__ import annotations

import asyncio

import click

from chatlog.cli.common import db_option, db_url
from chatlog.cli.schema import check_before_writing
from chatlog.history.output import terminal_safe
from chatlog.log import erasure
from chatlog.log.edits import ChangeRefused
from chatlog.log.open import opened


async def _redact(url: str, msg_id: int, reason: str | None) -> erasure.Erased:
    await check_before_writing(url)
    async with opened(url, access="write") as log:
        return await erasure.redact(log, msg_id, reason)


async def _authored(url: str, author: str, room: str | None) -> list[tuple[int, str]]:
    await check_before_writing(url)
    async with opened(url, access="write") as log:
        return await erasure.authored(log, author, room)


async def _erase(url: str, author: str, room: str | None) -> erasure.Erased:
    async with opened(url, access="write") as log:
        return await erasure.erase(log, author, room)


def _report(done: erasure.Erased) -> None:
    for msg_id, room, event in done.messages:
        click.echo(f"deleted message {msg_id} in room {terminal_safe(room)} (event {event})")
    if not done.scrubbed:
        click.echo(
            "warning: a reader held the WAL, so the erased text may still be in it until the "
            "next checkpoint; run `chatlog vacuum` when the readers are done",
            err=True,
        )


@click.command(name="redact")
@db_option()
@click.argument("msg_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--reason", help="Why, sent with the deletion (e.g. 'spam').")
def redact_command(db: str | None, msg_id: int, reason: str | None) -> None:
    """Delete message ID as a moderator: its text is erased, a tombstone keeps the ID.

    Running servers deliver the deletion live to the room, like any message.

    \b
    Example:
        chatlog redact 1234 --reason spam --db chat.db
    """
    try:
        done = asyncio.run(_redact(db_url(db), msg_id, reason))
    except ChangeRefused as exc:
        raise click.ClickException(f"cannot redact {msg_id}: {exc.message}") from None
    _report(done)


@click.command(name="erase")
@db_option()
@click.option("--author", required=True, help="Erase every message sent under this name.")
@click.option("--room", help="Only in this room.")
@click.option("--dry-run", is_flag=True, help="List the messages, change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask before erasing.")
def erase_command(db: str | None, author: str, room: str | None, dry_run: bool, yes: bool) -> None:
    """Erase every message of an author (a right-to-erasure request).

    Text, raw frames and earlier versions are removed from the database files; the rows stay
    as tombstones so IDs never move. Asks first unless --yes.

    \b
    Example:
        chatlog erase --author bob --room main --dry-run --db chat.db
    """
    url = db_url(db)
    found = asyncio.run(_authored(url, author, room))
    name = terminal_safe(author)
    if not found:
        click.echo(f"no messages of {name} to erase")
        return
    if dry_run:
        for msg_id, where in found:
            click.echo(f"would delete message {msg_id} in room {terminal_safe(where)}")
        click.echo(f"{len(found)} messages of {name}; nothing changed (--dry-run)")
        return
    if not yes:
        click.confirm(f"erase {len(found)} messages of {name}?", abort=True, err=True)
    done = asyncio.run(_erase(url, author, room))
    _report(done)
    click.echo(f"erased {len(done.messages)} messages of {name}")
