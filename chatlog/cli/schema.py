"""Commands that use the log check its schema first: an empty or old database is one clear line.

``sql``, ``replay``, ``export``, ``purge`` and ``vacuum`` need the tables of the newest migration;
without this check an empty file or one left at an older revision fails later with the
database's own words (``no such table: retention``). The error policy
(:mod:`chatlog.cli.errors`) turns :class:`SchemaNotCurrent` into the line to show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatlog.log import migrate
from chatlog.log.open import open_log

if TYPE_CHECKING:
    from chatlog.log.readonly import Readable


class SchemaNotCurrent(Exception):
    """The database is not at the schema revision this chatlog needs."""

    def __init__(self, revision: str | None, head: str) -> None:
        super().__init__(f"schema at {revision or 'none'}, need {head}")
        #: Where the database is (``None``: no chatlog tables at all).
        self.revision = revision
        #: What this chatlog needs.
        self.head = head


async def require_current(log: Readable) -> None:
    """Raise :class:`SchemaNotCurrent` unless the log is at the newest revision."""
    revision = await log.revision()
    if revision != migrate.head():
        raise SchemaNotCurrent(revision, migrate.head())


async def check_before_writing(url: str) -> None:
    """:func:`require_current` on a read-only connection, before a command opens the log to
    write: opening it to write would already turn an empty file into a WAL database."""
    log = open_log(url, access="read")
    try:
        await require_current(log)
    finally:
        await log.dispose()
