"""Pieces every ``chatlog`` subcommand shares: the ``--db`` option and settings from flags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from chatlog.cli.errors import not_a_url, remember_database
from chatlog.settings import Settings, SettingsError, database_url

FC = TypeVar("FC", bound=Callable[..., Any])


def db_option(**kwargs: Any) -> Callable[[FC], FC]:
    """``--db``, shared by every command that opens the log; errors name what it gives."""
    return click.option(
        "--db",
        envvar="CHATLOG_DB",
        callback=remember_database,
        help="Database: a file path (SQLite) or a URL such as postgresql+asyncpg://host/db. "
        f"Env: CHATLOG_DB. Default: {Settings.db}.",
        **kwargs,
    )


def db_url(value: str | None) -> str:
    """The SQLAlchemy URL for ``--db`` (default as in Settings), or a usage error.

    (A directory, or a missing file for a command that reads, is refused when the log is
    opened, before anything touches it.)
    """
    try:
        url = database_url(value or Settings.db)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    if "://" not in (value or Settings.db):
        return url  # made from a file path: nothing to parse (and no SQLAlchemy to import)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise click.UsageError(not_a_url(exc)) from None
    return url


def build_settings(**overrides: Any) -> Settings:
    """Settings from the environment and flags, with a bad value turned into a usage error."""
    try:
        return Settings.from_env(**overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
