"""``chatlog db upgrade|downgrade|current``: the log's schema, by alembic from the package."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.ext.asyncio import AsyncEngine

from chatlog.cli.common import db_option, db_url
from chatlog.log import db as log_db

T = TypeVar("T")


@click.group(name="db")
def db_group() -> None:
    """Migrate the log's schema (wraps alembic; works from an installed package).

    \b
    Example:
        chatlog db upgrade --db chat.db
    """


def _on_engine(url: str, action: Callable[[AsyncEngine], Awaitable[T]], *, must_exist: bool) -> T:
    async def run() -> T:
        log_db.check_database_path(url, must_exist=must_exist)
        engine = log_db.make_engine(url)
        try:
            return await action(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _known_revision(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Refuse a revision this chatlog does not have, before the database is touched."""
    if value in ("head", "heads", "base") or any(c in value for c in "+-@"):
        return value  # relative or branch forms: alembic resolves them against the database
    scripts = ScriptDirectory.from_config(log_db.alembic_config())
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
    _on_engine(db_url(db), lambda engine: log_db.upgrade(engine, revision), must_exist=False)
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
    _on_engine(db_url(db), lambda engine: log_db.downgrade(engine, revision), must_exist=True)
    click.echo(f"database at {revision}")


@db_group.command()
@db_option()
def current(db: str | None) -> None:
    """Print the revision the database is at, and whether it is the newest.

    \b
    Example:
        chatlog db current --db chat.db
    """
    rev = _on_engine(db_url(db), log_db.current_revision, must_exist=True)
    head = log_db.head_revision()
    click.echo(f"{rev or 'empty'}{' (head)' if rev == head else f' (head is {head})'}")
