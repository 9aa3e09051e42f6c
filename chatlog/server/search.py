"""The socket's reads beyond scroll-back: ``Search`` of the room, and ``History`` ``Around`` a
message (to show a search hit in its conversation).

Both read only the connection's own room, are bounded (``Limit`` at most 100 for a search,
500 around a message) and pass the rate limit like every other frame. A query that cannot be
searched is answered with an ``Error`` frame ``bad-query``; the connection carries on.
"""

from __future__ import annotations

from typing import Final

from chatlog import protocol
from chatlog.log.queries import stored_message
from chatlog.log.search import SearchRequest
from chatlog.log.search_query import BadQuery, parse, snippet
from chatlog.server.client import Client
from chatlog.server.keys import Runtime

#: Above any message ID: ``after(..., upto=NEWEST)`` reads to the room's end.
NEWEST: Final = 2**62


async def answer_search(rt: Runtime, client: Client, frame: protocol.SearchFrame) -> str | None:
    """Send the answer to a ``Search`` frame; the error message when the query is bad."""
    try:
        query = parse(frame.query)
    except BadQuery as exc:
        return str(exc)
    request = SearchRequest(query, rooms=(client.room,), before=frame.before, limit=frame.limit + 1)
    async with rt.log.view() as view:
        rows = await view.search(request)
    messages = []
    for row in rows[: frame.limit]:
        chat = stored_message(row).frame()
        chat["Snippet"] = snippet(row.text, query)
        messages.append(chat)
    client.send(protocol.search_frame(frame.query, messages, complete=len(rows) <= frame.limit))
    return None


async def answer_around(rt: Runtime, client: Client, request: protocol.HistoryRequest) -> None:
    """Send the messages of the room around ``request.around`` (it included), oldest first:
    about half of ``Limit`` before it, the rest from it on."""
    assert request.around is not None
    room, around, limit = client.room, request.around, request.limit
    older_wanted = limit // 2
    async with rt.log.view() as view:
        older = await view.before(room, around, older_wanted + 1)
        newer = await view.after(
            room, around - 1, NEWEST, limit - min(len(older), older_wanted) + 1, chat_only=True
        )
    newer_wanted = limit - min(len(older), older_wanted)
    complete = len(older) <= older_wanted and len(newer) <= newer_wanted
    shown = older[-older_wanted:] if older_wanted else []
    shown += newer[:newer_wanted]
    client.send(protocol.around_frame([m.frame() for m in shown], around=around, complete=complete))
