"""``chatlog db upgrade|downgrade|current``: the log's schema, by alembic from the package."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from chatlog.cli.common import db_option, db_url
from chatlog.log import migrate
from chatlog.log.backend import LogBackend
from chatlog.log.open import Access, open_log

T = TypeVar("T")


@click.group(name="db")
def db_group() -> None:
    """Migrate the log's schema (wraps alembic; works from an installed package).

    \b
    Example:
        chatlog db upgrade --db chat.db
    """


def _on_log(url: str, action: Callable[[LogBackend], Awaitable[T]], *, access: Access) -> T:
    async def run() -> T:
        log = open_log(url, access=access)
        try:
            return await action(log)
        finally:
            await log.dispose()

    return asyncio.run(run())


def _known_revision(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Refuse a revision this chatlog does not have, before the database is touched."""
    if value in ("head", "heads", "base") or any(c in value for c in "+-@"):
        return value  # relative or branch forms: alembic resolves them against the database
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    try:
        scripts.get_revision(value)
    except CommandError as exc:
        known = ", ".join(["base", *reversed([s.revision for s in scripts.walk_revisions()])])
        raise click.BadParameter(f"{exc} (there are: {known}, head)") from None
    return value


@db_group.command()
@db_option()
@click.argument("revision", default="head", callback=_known_revision)
def upgrade(db: str | None, revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest), creating it if needed.

    \b
    Example:
        chatlog db upgrade --db chat.db
    """
    _on_log(db_url(db), lambda log: log.migrate(revision), access="create")
    click.echo(f"database at {revision}")


@db_group.command()
@db_option()
@click.argument("revision", callback=_known_revision)
def downgrade(db: str | None, revision: str) -> None:
    """Migrate the database down to REVISION ("base" removes every table).

    \b
    Example:
        chatlog db downgrade base --db chat.db
    """
    _on_log(db_url(db), lambda log: log.downgrade(revision), access="write")
    click.echo(f"database at {revision}")


@db_group.command()
@db_option()
def current(db: str | None) -> None:
    """Print the revision the database is at, and whether it is the newest.

    \b
    Example:
        chatlog db current --db chat.db
    """
    rev = _on_log(db_url(db), LogBackend.revision, access="read")
    head = migrate.head()
    click.echo(f"{rev or 'empty'}{' (head)' if rev == head else f' (head is {head})'}")
