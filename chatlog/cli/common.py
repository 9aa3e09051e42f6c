"""Pieces every ``chatlog`` subcommand shares: the ``--db`` option and settings errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from chatlog.settings import Settings, SettingsError, database_url

FC = TypeVar("FC", bound=Callable[..., Any])


def db_option(**kwargs: Any) -> Callable[[FC], FC]:
    """``--db``, shared by every command that opens the log."""
    return click.option(
        "--db",
        envvar="CHATLOG_DB",
        help="Database: a file path (SQLite) or a URL such as postgresql+asyncpg://host/db. "
        "Env: CHATLOG_DB. Default: chatlog.db.",
        **kwargs,
    )


def db_url(value: str | None) -> str:
    """The SQLAlchemy URL for ``--db`` (default ``chatlog.db``), or a usage error."""
    try:
        return database_url(value or "chatlog.db")
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def build_settings(**overrides: Any) -> Settings:
    """Settings from the environment and flags, with a bad value turned into a usage error."""
    try:
        return Settings.from_env(**overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
