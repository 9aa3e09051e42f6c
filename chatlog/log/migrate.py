"""Alembic, driven from code: migrations are the only way the schema changes.

Works from an installed wheel (the scripts ship as ``chatlog/_migrations``) and from the source
tree (``migrations/`` at its top), with no ``alembic.ini``. A backend runs these on its own
connection (:meth:`chatlog.log.backend.LogBackend.migrate`).
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection


def migrations_dir() -> Path:
    """Where the alembic scripts are: inside an installed wheel, or at the source tree's top."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError("chatlog's migrations are missing from this installation")


def alembic_config(url: str | None = None) -> Config:
    """An alembic ``Config`` that needs no alembic.ini, so it works from an installed package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def run(sync_conn: Connection, name: str, revision: str) -> None:
    """Run alembic's ``upgrade`` or ``downgrade`` to ``revision`` on ``sync_conn``."""
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    getattr(command, name)(cfg, revision)


def current(sync_conn: Connection) -> str | None:
    """The revision the database is at, or ``None`` for an empty database."""
    return MigrationContext.configure(sync_conn).get_current_revision()


@functools.cache
def head() -> str:
    """The newest revision the code knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


async def schema_revision(conn: AsyncConnection) -> str | None:
    """The stored revision, as a writer op (``/readyz`` proves the writer can reach it)."""
    value = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    return None if value is None else str(value)


@functools.cache
def revisions() -> tuple[str, ...]:
    """Every revision the code knows, oldest first."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return tuple(reversed([script.revision for script in scripts.walk_revisions()]))
