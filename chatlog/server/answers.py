"""Large answers, page by page: a ``History`` answer and a resume backlog.

Either can be megabytes (500 messages of up to ``--max-message-bytes`` each, or
``--resume-max`` of them), so neither is built whole. Rows are read a page at a time on a
connection of their own, a page is about :data:`PAGE_BYTES` of frames (the row count adapts to
the room's message size), and the next page is read only when the socket has taken the last
one (:meth:`~chatlog.server.client.Client.drained`). A ``History`` answer larger than one page
goes out as one fragmented WebSocket message (RFC 6455 section 5.4), so it is still one
``History`` frame to the client; other frames wait until its last fragment.

One answer per connection is in flight at a time (the read loop awaits it), and the whole
server has a budget (``--answer-budget-bytes``): each answer in flight reserves
:data:`ANSWER_RESERVE` bytes of it. Beyond it a resume waits for a free slot; a ``History``
request waits up to :data:`HISTORY_WAIT` seconds and is then refused with a ``busy`` Error frame.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from chatlog import protocol
from chatlog.log.backend import LogBackend
from chatlog.log.model import StoredMessage
from chatlog.server.client import Client
from chatlog.server.wire import FIRST, LAST, MIDDLE, WHOLE, ws_frame

#: Frames (bytes) one page of a large answer aims at; a page holds at least one row.
PAGE_BYTES: Final = 256 * 1024
#: Of the server's budget, what one answer in flight reserves: its page, that page framed
#: for the wire, and the rows it was read from.
ANSWER_RESERVE: Final = 3 * PAGE_BYTES
#: Rows of the first page when the message size is not known yet (small: the first missed
#: message is on the wire within milliseconds).
FIRST_PAGE_ROWS: Final = 50
#: Most rows of any page.
MAX_PAGE_ROWS: Final = 500

#: Seconds a ``History`` request waits for room in the budget before it is refused (busy).
HISTORY_WAIT: Final = 2.0
BUSY_MESSAGE: Final = "the server is busy with other large answers; ask again in a moment"


class Busy(Exception):
    """No room in the answer budget within the wait allowed."""


class AnswerBudget:
    """The server-wide budget of large answers in flight, in bytes (slots of
    :data:`ANSWER_RESERVE`); there is always room for at least one."""

    def __init__(self, budget_bytes: int) -> None:
        self.slots = max(1, budget_bytes // ANSWER_RESERVE)
        self._free = asyncio.Semaphore(self.slots)
        #: Answers being written now, and requests refused as ``busy`` since start.
        self.in_flight = 0
        self.refused = 0
        #: The most answers ever in flight at once.
        self.peak = 0

    @contextlib.asynccontextmanager
    async def slot(self, wait: float | None = None) -> AsyncIterator[None]:
        """Hold one answer's share of the budget; :class:`Busy` after ``wait`` seconds."""
        try:
            await asyncio.wait_for(self._free.acquire(), wait)
        except TimeoutError:
            self.refused += 1
            raise Busy from None
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._free.release()


def page_rows(sent_rows: int, sent_bytes: int) -> int:
    """Rows for the next page: about :data:`PAGE_BYTES` at the mean frame size so far."""
    if not sent_rows:
        return FIRST_PAGE_ROWS
    return max(1, min(MAX_PAGE_ROWS, PAGE_BYTES * sent_rows // max(1, sent_bytes)))


Page = Callable[[int, int], Awaitable[list[StoredMessage]]]


def pager(log: LogBackend, room: str, upto: int, *, chat_only: bool = False) -> Page:
    """``page(after, rows)``: the next rows of ``room`` up to ``upto`` (``chat_only``: no edit
    or delete events), each page on a connection of its own (none is held while the socket
    drains)."""

    async def page(after: int, rows: int) -> list[StoredMessage]:
        async with log.view() as view:
            return await view.after(room, after, upto, rows, chat_only=chat_only)

    return page


async def send_backlog(
    client: Client, page: Page, after: int, on_rows: Callable[[int], None]
) -> int:
    """Write the messages after ``after`` as Chat frames, page by page; the last ID sent."""
    sent_rows = sent_bytes = 0
    while True:
        rows = await page(after, page_rows(sent_rows, sent_bytes))
        if not rows:
            return after
        batch = tuple(protocol.encode(m.frame()) for m in rows)
        await client.drained()
        client.send_batch(batch)
        on_rows(len(rows))
        sent_rows += len(rows)
        sent_bytes += sum(map(len, batch))
        after = rows[-1].id


async def history_range(
    log: LogBackend, room: str, before: int | None, limit: int
) -> tuple[list[int], bool, int]:
    """The IDs of the newest ``limit`` messages of ``room`` older than ``before``, newest
    first (the answer's range, without reading its rows), whether older ones exist, and the
    room's retention floor."""
    async with log.view() as view:
        ids = await view.ids_before(room, before, limit + 1)
        floor = await view.room_floor(room)
    return ids[:limit], len(ids) > limit, floor


async def send_history(client: Client, log: LogBackend, request: protocol.HistoryRequest) -> None:
    """Answer ``History``: small answers as one frame, large ones as fragments, page by page."""
    room = client.room
    ids, more, floor = await history_range(log, room, request.before, request.limit)
    empty = protocol.encode(protocol.history_frame([], more=more, floor=floor))
    if not ids:
        client.send_batch((empty,))
        return
    cut = empty.index(b'"Messages":[]') + len(b'"Messages":[')
    prefix, suffix = empty[:cut], empty[cut:]
    page = pager(log, room, ids[0], chat_only=True)
    after, sent_rows, sent_bytes, first = ids[-1] - 1, 0, 0, True
    while True:
        rows = await page(after, page_rows(sent_rows, sent_bytes))
        last = not rows or rows[-1].id >= ids[0]
        body = b",".join(protocol.encode(m.frame()) for m in rows)
        if rows and not first:
            body = b"," + body
        if first:
            body = prefix + body
        if last:
            body += suffix
        await client.drained()
        if first and last:
            client.put(ws_frame(body, WHOLE))
            return
        client.write_fragment(
            ws_frame(body, FIRST if first else LAST if last else MIDDLE), last=last
        )
        if last:
            return
        first = False
        sent_rows += len(rows)
        sent_bytes += len(body)
        after = rows[-1].id
