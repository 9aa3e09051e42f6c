"""Alembic, driven from code: migrations are the only way the schema changes.

Works from an installed wheel (the scripts ship as ``chatlog/_migrations``) and from the source
tree (``migrations/`` at its top), with no ``alembic.ini``. A backend runs these on its own
connection (:meth:`chatlog.log.backend.LogBackend.migrate`).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # alembic is imported only to migrate: it costs most of a command's start-up
    from alembic.config import Config
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection

#: The ``revision = "..."`` and ``down_revision = ...`` lines of a migration script (typed or not).
_REVISION: Final = re.compile(r"^revision(?:\s*:[^=\n]+)?\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION: Final = re.compile(
    r"^down_revision(?:\s*:[^=\n]+)?\s*=\s*(?:None|['\"]([^'\"]+)['\"])", re.MULTILINE
)


def migrations_dir() -> Path:
    """Where the alembic scripts are: inside an installed wheel, or at the source tree's top."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError("chatlog's migrations are missing from this installation")


def alembic_config(url: str | None = None) -> Config:
    """An alembic ``Config`` that needs no alembic.ini, so it works from an installed package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def run(sync_conn: Connection, name: str, revision: str) -> None:
    """Run alembic's ``upgrade`` or ``downgrade`` to ``revision`` on ``sync_conn``."""
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    getattr(command, name)(cfg, revision)


def current(sync_conn: Connection) -> str | None:
    """The revision the database is at, or ``None`` for an empty database (one query on
    ``alembic_version``, as alembic's own check makes, without importing alembic)."""
    from sqlalchemy import inspect, text

    if not inspect(sync_conn).has_table("alembic_version"):
        return None
    value = sync_conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)


@functools.cache
def head() -> str:
    """The newest revision the code knows."""
    return revisions()[-1]


async def schema_revision(conn: AsyncConnection) -> str | None:
    """The stored revision, as a writer op (``/readyz`` proves the writer can reach it)."""
    from sqlalchemy import text

    value = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    return None if value is None else str(value)


@functools.cache
def revisions() -> tuple[str, ...]:
    """Every revision the code knows, oldest first: read from the scripts' ``revision`` and
    ``down_revision`` lines, so knowing the head needs no alembic (a test checks that alembic
    agrees). The history is one line: each revision names the one before it."""
    parent: dict[str | None, str] = {}
    for script in sorted((migrations_dir() / "versions").glob("*.py")):
        source = script.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            raise RuntimeError(f"migration {script.name} names no revision")
        parent[down.group(1)] = revision.group(1)
    chain: list[str] = []
    while (following := parent.get(chain[-1] if chain else None)) is not None:
        chain.append(following)
    if len(chain) != len(parent):
        raise RuntimeError("chatlog's migrations do not form one line of revisions")
    return tuple(chain)
