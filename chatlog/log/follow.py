"""Delivery in ID order when other processes append to the same log too (both backends).

Every writer of a shared log appends under one lock (SQLite's write lock, PostgreSQL's
advisory lock), so the committed IDs always form a prefix: a row that commits later never
gets a smaller ID. A :class:`Follower` keeps ``last``, the highest ID handed to the sockets,
and delivers:

* this process's own commit directly, when its first ID is ``last + 1`` (nothing foreign
  came in between: the fast path, no read);
* otherwise, and whenever the log says another process wrote, everything after ``last``
  read from the table in ID order and bounded pages (:meth:`Follower.catch_up`), own rows
  included, so a client never sees IDs out of order.

Rows of rooms without a local socket are skipped unparsed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from chatlog.log.backend import Listener
from chatlog.log.model import StoredMessage, stored_fields

#: One row read after ``last``: id, room, ws_id, author, raw, sent_at, kind, target_id,
#: edited_at, deleted_at.
Row = Sequence[Any]
#: Reads up to ``page`` rows with ID above ``after``, in ID order.
ReadAfter = Callable[[int, int], Awaitable[Sequence[Row]]]


def _when(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _maybe_when(value: Any) -> datetime | None:
    return None if value is None else _when(value)


def publish_rows(listener: Listener, rows: Sequence[Row], last: int) -> int:
    """Deliver the rows with ID above ``last`` of rooms with local sockets; the new ``last``."""
    rooms = listener.rooms()
    batch = [
        StoredMessage(
            r[0],
            r[1],
            r[2],
            r[3],
            stored_fields(r[4]),
            _when(r[5]),
            kind=r[6],
            target=r[7],
            edited_at=_maybe_when(r[8]),
            deleted_at=_maybe_when(r[9]),
        )
        for r in rows
        if r[0] > last and r[1] in rooms
    ]
    if batch:
        listener.deliver(batch)
    return max(last, rows[-1][0]) if rows else last


class Follower:
    """One process's ordered delivery over a shared log (see the module docstring)."""

    def __init__(self, listener: Listener, read: ReadAfter, *, page: int = 1000) -> None:
        self.listener = listener
        self.read = read
        self.page = page
        #: The highest message ID this process has published (or skipped: no local socket).
        self.last = 0
        #: Rows read from the table, and own commits delivered without a read (for tests).
        self.rows_read = 0
        self.direct = 0

    def committed(self, stored: list[StoredMessage]) -> bool:
        """This process's commit; ``False`` when a read must deliver it (IDs were skipped)."""
        fresh = [m for m in stored if not m.duplicate]
        if not fresh or fresh[0].id == self.last + 1:
            # Retries answer their own sender only; they hold old IDs and need no order.
            self.listener.deliver(stored)
            if fresh:
                self.last = fresh[-1].id
                self.direct += 1
            return True
        duplicates = [m for m in stored if m.duplicate]
        if duplicates:
            self.listener.deliver(duplicates)
        # Already read from the table (all or nothing: a batch commits as one), or a gap.
        return fresh[-1].id <= self.last

    async def catch_up(self) -> None:
        """Publish every row after :attr:`last`, in ID order, a bounded page at a time."""
        while True:
            rows = await self.read(self.last, self.page)
            self.rows_read += len(rows)
            # An own commit may have been delivered directly while the read ran: skip it.
            self.last = publish_rows(self.listener, rows, self.last)
            if len(rows) < self.page:
                return
