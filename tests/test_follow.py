"""Ordered delivery over a shared log (chatlog.log.follow), with the races pinned down.

The listener is the log's own boundary (the server's sockets as the feed sees them), so a
recording one stands in for the hub; the rows come from a list standing in for the table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from chatlog.log.follow import Follower
from chatlog.log.model import LiveConnection, StoredMessage

WHEN = datetime(2026, 1, 1)


class Recorder:
    """Records what would reach the sockets."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def rooms(self) -> Collection[str]:
        return {"main"}

    def deliver(self, stored: list[StoredMessage]) -> None:
        self.ids.extend(m.id for m in stored)

    def presence(self, room: str, aliases: list[str]) -> None:
        raise AssertionError("not used")

    def connections(self) -> Iterable[LiveConnection]:
        return []


def row(msg_id: int, room: str = "main") -> tuple[Any, ...]:
    """A chat row as the table read gives it (the columns of :data:`chatlog.log.follow.Row`)."""
    return (msg_id, room, "", "system", '{"Message":"eA=="}', WHEN, "chat", None, None, None)


def own(*ids: int) -> list[StoredMessage]:
    return [StoredMessage(i, "main", "ws", "me", {"Message": "eA=="}, WHEN) for i in ids]


class Table:
    """The committed rows; ``read`` can be held to let an own commit land mid-read."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.gate: asyncio.Event | None = None

    async def read(self, after: int, limit: int) -> Sequence[tuple[Any, ...]]:
        found = [r for r in self.rows if r[0] > after][:limit]
        if self.gate is not None:
            await self.gate.wait()
        return found


async def test_own_commit_after_an_unread_foreign_row_waits_for_it() -> None:
    """An own commit whose first ID skips a foreign row is not delivered ahead of it: the
    read delivers both, in ID order, and the next contiguous own commit goes directly."""
    table, sockets = Table(), Recorder()
    follower = Follower(sockets, table.read)
    table.rows = [row(1)]
    assert follower.committed([]) is True
    await follower.catch_up()
    table.rows += [row(2), row(3)]  # 2 foreign, 3 our own, committed after it
    assert follower.committed(own(3)) is False
    assert sockets.ids == [1]
    await follower.catch_up()
    assert sockets.ids == [1, 2, 3]
    table.rows.append(row(4))
    assert follower.committed(own(4)) is True
    assert sockets.ids == [1, 2, 3, 4] and follower.direct == 1


async def test_own_commit_during_a_read_is_not_delivered_twice() -> None:
    """A read that started before an own commit and returns it skips it; rows after it
    still follow, and rows of rooms without sockets are skipped but counted."""
    table, sockets = Table(), Recorder()
    follower = Follower(sockets, table.read)
    table.rows = [row(1), row(2, "elsewhere")]
    table.gate = asyncio.Event()
    reading = asyncio.create_task(follower.catch_up())
    await asyncio.sleep(0)
    table.rows += [row(3), row(4)]
    # The read already has its snapshot [1, 2]; 3 is ours and does not follow 0: it waits.
    assert follower.committed(own(3)) is False
    table.gate.set()
    await reading
    assert sockets.ids == [1] and follower.last == 2
    table.gate = None
    await follower.catch_up()
    assert sockets.ids == [1, 3, 4]
    # An own commit the read already delivered is not delivered again.
    assert follower.committed(own(4)) is True
    assert sockets.ids == [1, 3, 4]


async def test_retries_reach_their_sender_at_once() -> None:
    """A retried nonce (an old ID) is handed over at once, whatever is still to be read."""
    table, sockets = Table(), Recorder()
    follower = Follower(sockets, table.read)
    follower.last = 10
    retry = own(5)[0]
    retry.duplicate = True
    assert follower.committed([retry]) is True
    assert sockets.ids == [5] and follower.last == 10
