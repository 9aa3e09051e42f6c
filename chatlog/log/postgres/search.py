"""The search index on PostgreSQL: a ``tsvector`` of every message's folded words, GIN-indexed.

``messages_fts (id, words)`` references ``messages`` with ``ON DELETE CASCADE``, so any delete
of a message takes its entry along. ``words`` is built from :func:`chatlog.log.words.tokens`
as a ``tsvector`` literal (each token with its positions), not by ``to_tsvector``: the words
are then exactly SQLite's, whatever PostgreSQL's parser or the database's locale would make
of them. Queries are ``tsquery`` literals of the same tokens (:func:`tsquery`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log.search import Match, SearchIndex, SearchRequest
from chatlog.log.search_query import Phrase, Query
from chatlog.log.words import tokens

#: The index's one statement for adding a message.
INSERT: Final = text("INSERT INTO messages_fts (id, words) VALUES (:id, CAST(:words AS tsvector))")
DELETE: Final = text("DELETE FROM messages_fts WHERE id = ANY(:ids)")
#: Newest first looks at the newest IDs of this many first (see PostgresSearch.two_steps).
RECENT: Final = 20_000
#: The newest indexed ID (where the newest first search starts).
HEAD: Final = "SELECT max(id) FROM messages_fts"


def _lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector(text_: str) -> str:
    """The ``tsvector`` literal of a message's text: each token with its positions (from 1)."""
    positions: dict[str, list[str]] = {}
    for position, token in enumerate(tokens(text_), start=1):
        positions.setdefault(token, []).append(str(position))
    return " ".join(f"{_lexeme(t)}:{','.join(p)}" for t, p in positions.items())


def params(rows: Iterable[tuple[int, str]]) -> list[dict[str, Any]]:
    """The parameters of :data:`INSERT` for ``(id, text)`` rows."""
    return [{"id": msg_id, "words": tsvector(body)} for msg_id, body in rows]


def _phrase(phrase: Phrase) -> str:
    lexemes = [_lexeme(t) for t in phrase.tokens]
    if phrase.prefix:
        lexemes[-1] += ":*"
    return "(" + " <-> ".join(lexemes) + ")"


def tsquery(query: Query) -> str:
    """The query as a ``tsquery`` literal, fully parenthesised."""
    parts = ["(" + " | ".join(_phrase(p) for p in group) + ")" for group in query.groups]
    parts += ["!" + _phrase(p) for p in query.exclude]
    return " & ".join(parts)


class PostgresSearch(SearchIndex):
    """A GIN-indexed ``tsvector`` over the folded words."""

    async def index_rows(self, conn: AsyncConnection, rows: Iterable[tuple[int, str]]) -> None:
        values = params(rows)
        if values:
            await conn.execute(INSERT, values)

    async def unindex(self, conn: AsyncConnection, ids: Sequence[int]) -> None:
        if ids:
            await conn.execute(DELETE, {"ids": list(ids)})

    def match(self, query: Query) -> Match:
        return Match(
            source="messages_fts AS f JOIN messages AS m ON m.id = f.id",
            condition="f.words @@ CAST(:match AS tsquery)",
            id_column="f.id",
            rank="-ts_rank(f.words, CAST(:match AS tsquery))",
            params={"match": tsquery(query)},
        )

    def _from_gin(self, query: Query) -> Match:
        # OFFSET 0 keeps the subquery apart, so the GIN index answers the match on its own.
        return Match(
            source="(SELECT id FROM messages_fts WHERE words @@ CAST(:match AS tsquery) OFFSET 0)"
            " AS f JOIN messages AS m ON m.id = f.id",
            condition="TRUE",
            id_column="f.id",
            rank="m.id",
            params={"match": tsquery(query)},
        )

    async def find(self, conn: AsyncConnection, request: SearchRequest) -> list[Any]:
        """Newest first in two steps (see :meth:`two_steps`), on a SQLAlchemy connection."""

        async def rows(part: SearchRequest, match: Match) -> list[Any]:
            return await self.select(conn, part, match)

        async def head() -> Any:
            return await conn.scalar(text(HEAD))

        return await self.two_steps(request, rows, head)

    async def two_steps(
        self,
        request: SearchRequest,
        rows: Callable[[SearchRequest, Match], Awaitable[list[Any]]],
        head: Callable[[], Awaitable[Any]],
    ) -> list[Any]:
        """Newest first in two steps. A GIN index finds matches in no order, and the planner
        cannot tell a word in one message from one in half of them (measured on 1M rows: it
        walked the whole ID index backwards for a rare word, 0.5 s). So the newest
        :data:`RECENT` IDs are searched first (either plan is cheap there); only when they
        hold too few matches are the older ones taken from the GIN index alone. ``rows`` runs
        one request the way a match says, ``head`` runs :data:`HEAD` (on any driver)."""
        if request.order != "newest":
            return await rows(request, self.match(request.query))
        top = request.before
        if top is None:
            top = int(await head() or 0) + 1
        floor = max(top - 1 - RECENT, request.after or 0)
        recent = await rows(replace(request, after=floor), self.match(request.query))
        if len(recent) >= request.limit or floor <= (request.after or 0):
            return recent
        older = replace(request, before=floor + 1, limit=request.limit - len(recent))
        return recent + await rows(older, self._from_gin(request.query))
