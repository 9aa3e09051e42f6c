"""The server's reads of a PostgreSQL log on the asyncpg driver itself (no SQLAlchemy).

Through SQLAlchemy's async layer each of a resume's few queries paid its statement
compilation, result processing and, per checkout, a pre-ping round trip. Here a view is a
connection of a small asyncpg pool of its own (:class:`PostgresReads`), and every query one
round trip: asyncpg prepares each statement once per connection and keeps it, by SQL text.
The statements run outside a transaction, each on its own snapshot, as the Core view's did
under PostgreSQL's default ``READ COMMITTED``. asyncpg decodes ``timestamp`` columns to naive
``datetime`` values, as SQLAlchemy did.

A search runs the index's own statements and two-step plan
(:meth:`~chatlog.log.postgres.search.PostgresSearch.two_steps`), its ``:name`` parameters
numbered for asyncpg (:func:`numbered`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg

from chatlog.log.model import StoredMessage
from chatlog.log.postgres.search import HEAD, PostgresSearch
from chatlog.log.queries import MESSAGE_SQL, LogView, stored_tuples
from chatlog.log.search import Match, SearchRequest, SearchRow, statement

#: Most connections of the pool (the Core engine's pool holds 5 plus 10 on demand; these
#: reads are short, and a page's connection is given back before the socket drains).
POOL: Final = 10

_HEAD = "SELECT max(id) FROM messages WHERE room = $1"
_ALIASES = (
    "SELECT users.alias FROM users JOIN websocket_connections "
    "ON websocket_connections.ws_id = users.ws_id WHERE users.room = $1 "
    "ORDER BY websocket_connections.opened_at, websocket_connections.ws_id"
)
_FLOOR = "SELECT purged_through FROM retention WHERE room = $1"
_AFTER = (
    f"SELECT {MESSAGE_SQL} FROM messages WHERE room = $1 AND id > $2 AND id <= $3 "
    "ORDER BY id LIMIT $4"
)
_AFTER_CHAT = (
    f"SELECT {MESSAGE_SQL} FROM messages WHERE room = $1 AND id > $2 AND id <= $3 "
    "AND kind = 'chat' ORDER BY id LIMIT $4"
)
_BEFORE = (
    f"SELECT {MESSAGE_SQL} FROM messages WHERE room = $1 AND kind = 'chat' AND id < $2 "
    "ORDER BY id DESC LIMIT $3"
)
_IDS_BEFORE = (
    "SELECT id FROM messages WHERE room = $1 AND kind = 'chat' AND id < $2 "
    "ORDER BY id DESC LIMIT $3"
)
_BEYOND = (
    "SELECT id FROM messages WHERE room = $1 AND id > $2 AND id <= $3 ORDER BY id LIMIT 1 OFFSET $4"
)
_INDEX: Final = PostgresSearch()
#: A ``:name`` parameter (not a ``::`` cast).
_PARAMETER: Final = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
#: Above any message ID (``before=None``: from the room's end).
_TOP: Final = 2**63 - 1


def _same(value: Any) -> Any:
    return value


class PostgresReads:
    """The asyncpg pool of one server's reads, opened at its first read."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=POOL)
        return self._pool

    @asynccontextmanager
    async def view(self) -> AsyncIterator[PostgresView]:
        """One view on a pooled connection."""
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            yield PostgresView(self, conn)

    async def close(self) -> None:
        """Close the pool (waiting for the views still open)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


class PostgresView(LogView):
    """The reads on one pooled asyncpg connection."""

    def __init__(self, reads: PostgresReads, conn: Any) -> None:
        self.reads = reads
        self.conn = conn

    async def room_head(self, room: str) -> int:
        return int(await self.conn.fetchval(_HEAD, room) or 0)

    async def room_aliases(self, room: str) -> list[str]:
        return [r[0] for r in await self.conn.fetch(_ALIASES, room)]

    async def room_floor(self, room: str) -> int:
        return int(await self.conn.fetchval(_FLOOR, room) or 0)

    async def after(
        self, room: str, after: int, upto: int, limit: int, *, chat_only: bool = False
    ) -> list[StoredMessage]:
        rows = await self.conn.fetch(_AFTER_CHAT if chat_only else _AFTER, room, after, upto, limit)
        return stored_tuples(rows, _same)

    async def before(self, room: str, before: int | None, limit: int) -> list[StoredMessage]:
        top = _TOP if before is None else before
        rows = await self.conn.fetch(_BEFORE, room, top, limit)
        rows.reverse()
        return stored_tuples(rows, _same)

    async def ids_before(self, room: str, before: int | None, limit: int) -> list[int]:
        top = _TOP if before is None else before
        return [r[0] for r in await self.conn.fetch(_IDS_BEFORE, room, top, limit)]

    async def more_than(self, room: str, after: int, upto: int, limit: int) -> bool:
        return await self.conn.fetchrow(_BEYOND, room, after, upto, limit) is not None

    async def search(self, request: SearchRequest) -> list[Any]:
        async def rows(part: SearchRequest, match: Match) -> list[Any]:
            sql, args = numbered(*statement(part, match))
            return [SearchRow(*r) for r in await self.conn.fetch(sql, *args)]

        async def head() -> Any:
            return await self.conn.fetchval(HEAD)

        return await _INDEX.two_steps(request, rows, head)


def numbered(sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """SQL with ``:name`` parameters (as :func:`chatlog.log.search.statement` writes it) in
    asyncpg's ``$1`` form, and the values in that order (a name used twice is one number)."""
    names: list[str] = []

    def number(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAMETER.sub(number, sql), [params[name] for name in names]
