"""Full-text search of the log: the one interface to each backend's index.

Every message's text is in the index from the transaction that stores it. The one place
through which text enters or leaves the index is a backend's :class:`SearchIndex`
(``backend.search_index``): :meth:`~SearchIndex.index_rows` (the writer's appends, import,
the migration that builds the index, :func:`chatlog.log.edits.write_text`) and
:meth:`~SearchIndex.unindex`. Deleting a
message row removes its entry by itself (SQLite: a trigger; PostgreSQL: ``ON DELETE
CASCADE``), so retention, purge and hand-made deletes keep the index exact.

A search is a :class:`SearchRequest`: a parsed :class:`~chatlog.log.search_query.Query`
plus the selection flags of ``replay``; :meth:`SearchIndex.find` answers with whole message
rows, newest first (or best ranked first).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import namedtuple
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log.schema import COLUMNS, messages
from chatlog.log.search_query import Query

#: Most results one search returns.
MAX_RESULTS = 1000

#: A search hit read by a driver view: every column of ``messages`` by name (as a SQLAlchemy
#: row offers them).
SearchRow = namedtuple("SearchRow", COLUMNS)  # type: ignore[misc]

Order = Literal["newest", "rank"]


def searchable(rows: Iterable[dict[str, Any]]) -> list[tuple[int, str]]:
    """The (id, text) of the rows the index holds: chat messages not deleted (edit and delete
    events, and tombstones, are never found; an edited message is found by its current text)."""
    return [
        (row["id"], row["text"])
        for row in rows
        if row.get("kind", "chat") == "chat" and row.get("deleted_at") is None
    ]


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """What to search for, and where."""

    query: Query
    rooms: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    #: Only messages with a smaller ID (paging further back).
    before: int | None = None
    #: Only messages with a greater ID.
    after: int | None = None
    limit: int = 20
    order: Order = "newest"


@dataclass(frozen=True, slots=True)
class Match:
    """How one backend matches: ``FROM`` (message columns as ``m``), the condition, the
    index's ID column, the rank expression (smaller is better) and their parameters."""

    source: str
    condition: str
    id_column: str
    rank: str
    params: dict[str, Any]


class SearchIndex(ABC):
    """One database's full-text index over ``messages.text``."""

    @abstractmethod
    async def index_rows(self, conn: AsyncConnection, rows: Iterable[tuple[int, str]]) -> None:
        """Put ``(id, text)`` of messages into the index (in the caller's transaction); an
        ID already indexed must be :meth:`unindex`-ed first (an edit does both)."""

    @abstractmethod
    async def unindex(self, conn: AsyncConnection, ids: Sequence[int]) -> None:
        """Take messages out of the index (in the caller's transaction)."""

    @abstractmethod
    def match(self, query: Query) -> Match:
        """How this database finds ``query``."""

    async def find(self, conn: AsyncConnection, request: SearchRequest) -> list[Any]:
        """The matching message rows (every column of ``messages``), at most ``limit``."""
        return await self.select(conn, request, self.match(request.query))

    async def select(
        self, conn: AsyncConnection, request: SearchRequest, match: Match
    ) -> list[Any]:
        """The rows of ``request`` found the way ``match`` says."""
        sql, params = statement(request, match)
        times = [bindparam(name, type_=DateTime()) for name in TIMES if name in params]
        query = text(sql).bindparams(*times).columns(*messages.columns)
        return list((await conn.execute(query, params)).all())


#: The parameters of :func:`statement` that are timestamps (a driver view stores them as
#: the backend does).
TIMES = ("since", "until")


def statement(request: SearchRequest, match: Match) -> tuple[str, dict[str, Any]]:
    """The SQL (``:name`` parameters, every column of ``messages`` as ``m``) and parameters
    of ``request`` found the way ``match`` says."""
    where = [match.condition]
    params = dict(match.params)
    for name, op in (("before", "<"), ("after", ">")):
        if getattr(request, name) is not None:
            where.append(f"{match.id_column} {op} :{name}")
            params[name] = getattr(request, name)
    for name, values in (("room", request.rooms), ("author", request.authors)):
        if values:
            names = [f"{name}{i}" for i in range(len(values))]
            where.append(f"m.{name} IN ({', '.join(':' + n for n in names)})")
            params.update(zip(names, values, strict=True))
    if request.since is not None:
        where.append("m.sent_at >= :since")
        params["since"] = request.since
    if request.until is not None:
        where.append("m.sent_at < :until")
        params["until"] = request.until
    order = f"{match.id_column} DESC" if request.order == "newest" else f"{match.rank}, m.id DESC"
    sql = (
        f"SELECT {', '.join('m.' + c for c in COLUMNS)} FROM {match.source} "
        f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT :limit"
    )
    params["limit"] = min(request.limit, MAX_RESULTS)
    return sql, params
