"""``chatlog db upgrade|downgrade|current``: the log's schema, by alembic from the package."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from chatlog.cli.common import db_option, db_url
from chatlog.cli.helptext import FullSummaries
from chatlog.cli.schema import SchemaNotCurrent
from chatlog.log import migrate
from chatlog.log.backend import LogBackend
from chatlog.log.open import Access, open_log

T = TypeVar("T")


@click.group(name="db", cls=FullSummaries)
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
    if value not in migrate.revisions():
        known = ", ".join(["base", *migrate.revisions(), "head"])
        raise click.BadParameter(f"there is no revision {value!r}; use one of {known}")
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
    url = db_url(db)
    # Read first: opening an empty file to write would already make it a WAL database.
    if _on_log(url, LogBackend.revision, access="read") is None:
        raise SchemaNotCurrent(None, migrate.head())  # nothing to migrate down
    _on_log(url, lambda log: log.downgrade(revision), access="write")
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
    if rev is None:
        raise SchemaNotCurrent(None, head)
    behind = f" (head is {head}; `chatlog db upgrade` migrates it)"
    click.echo(f"{rev}{' (head)' if rev == head else behind}")
