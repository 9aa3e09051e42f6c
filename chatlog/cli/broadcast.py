"""``chatlog broadcast``: the original's ``BroadCast("text")``, from the command line."""

from __future__ import annotations

import asyncio

import click

from chatlog import protocol
from chatlog.cli.common import db_option, db_url
from chatlog.log.model import StoredMessage
from chatlog.log.open import open_log
from chatlog.log.post import active_rooms, append, new_message


async def _broadcast(url: str, text: str, rooms: list[str], every: bool) -> list[StoredMessage]:
    log = open_log(url, access="write")
    try:
        if every:
            async with log.core_view() as view:
                rooms = await active_rooms(view.conn)
            if not rooms:
                raise click.UsageError("the log has no rooms yet; name one with --room")
        batch = [new_message(room, text) for room in rooms]
        return await append(log, batch)
    finally:
        await log.dispose()


@click.command(name="broadcast")
@click.argument("text")
@click.option("--room", "rooms", multiple=True, help="A room to post to (repeat for several).")
@click.option(
    "--all", "every", is_flag=True, help="Every room with a live connection or any message."
)
@db_option()
def broadcast_command(text: str, rooms: tuple[str, ...], every: bool, db: str | None) -> None:
    """Post TEXT as "system" to rooms; print each new message's ID and room.

    The messages are stored in the log whether or not a server runs: every server on the
    log delivers them live, in order with the chat, and any resume finds them.

    \b
    Example:
        chatlog broadcast --db chat.db --all "maintenance at 18:00 UTC"
    """
    if every == bool(rooms):
        raise click.UsageError("say where: --room NAME (one or more) or --all")
    try:
        names = [protocol.parse_room(room) for room in rooms]
        new_message(protocol.DEFAULT_ROOM, text)  # the text is checked before the log opens
    except protocol.ProtocolError as exc:
        raise click.UsageError(exc.message) from None
    for message in asyncio.run(_broadcast(db_url(db), text, list(dict.fromkeys(names)), every)):
        click.echo(f"{message.id}\t{message.room}")
