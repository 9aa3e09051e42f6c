"""The search index on SQLite: an FTS5 table of the folded words of every message.

``messages_fts`` (rowid = message ID) holds each message's words for FTS5's ``ascii``
tokenizer (:func:`chatlog.log.words.for_ascii_tokenizer`): plain ASCII text as written, which
that tokenizer splits and folds exactly as Python would, and any other text already folded
into its tokens joined by spaces, which it keeps as they are. It stores its own copy of
those words rather than being an external-content table over ``messages.text``: removing an
entry then needs only the rowid, so the ``AFTER DELETE`` trigger on ``messages`` keeps the
index exact for every delete, including one typed into ``sqlite3`` by hand.

Without FTS5's ``secure-delete`` (SQLite 3.44+; this build may be older) a removed entry's
words stay in the index's segment pages, marked deleted, until FTS5 merges them or
``INSERT INTO messages_fts(messages_fts) VALUES ('optimize')`` runs: no search finds them,
but they are still in the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log.search import Match, SearchIndex
from chatlog.log.search_query import Query, fts5
from chatlog.log.words import for_ascii_tokenizer

#: The index's one statement for adding a message (named parameters: ``sqlite3`` and
#: SQLAlchemy's ``text`` both take it).
INSERT: Final = "INSERT INTO messages_fts (rowid, words) VALUES (:id, :words)"
DELETE: Final = "DELETE FROM messages_fts WHERE rowid = :id"


def params(rows: Iterable[tuple[int, str]]) -> list[dict[str, Any]]:
    """The parameters of :data:`INSERT` for ``(id, text)`` rows."""
    return [{"id": msg_id, "words": for_ascii_tokenizer(text)} for msg_id, text in rows]


def index_sync(db: sqlite3.Connection, rows: Iterable[tuple[int, str]]) -> None:
    """:meth:`SqliteSearch.index_rows` on the writer's own ``sqlite3`` connection."""
    db.executemany(INSERT, params(rows))


class SqliteSearch(SearchIndex):
    """FTS5 over the folded words."""

    async def index_rows(self, conn: AsyncConnection, rows: Iterable[tuple[int, str]]) -> None:
        values = params(rows)
        if values:
            await conn.exec_driver_sql(INSERT, values)

    async def unindex(self, conn: AsyncConnection, ids: Sequence[int]) -> None:
        if ids:
            await conn.exec_driver_sql(DELETE, [{"id": i} for i in ids])

    def match(self, query: Query) -> Match:
        # CROSS JOIN keeps FTS5 the outer loop: it walks its matches in rowid order (newest
        # first for DESC) and the LIMIT stops it early.
        return Match(
            source="messages_fts CROSS JOIN messages AS m ON m.id = messages_fts.rowid",
            condition="messages_fts MATCH :match",
            id_column="messages_fts.rowid",
            rank="messages_fts.rank",
            params={"match": fts5(query)},
        )
