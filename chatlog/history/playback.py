"""Playing a :class:`~chatlog.history.replay.Selection` out of the log: the range, then
(optionally) new messages as they are committed, at the original pace if asked, with a progress
bar on a terminal.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Protocol

from chatlog.history.replay import Format, Selection
from chatlog.log.readonly import Readable, ReadOnly

#: ``--follow`` checks for new rows this often when they keep coming, backing off to
#: ``FOLLOW_MAX`` while the log is idle: one indexed ``max(id)`` lookup per check.
FOLLOW_MIN = 0.05
FOLLOW_MAX = 0.5
#: Fewer rows than this print faster than a bar could say anything useful.
PROGRESS_MIN_ROWS = 10_000


class Progress(Protocol):
    def update(self, n: int) -> Any: ...
    def close(self) -> Any: ...


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int | None, *, desc: str, stream: IO[str] | None = None) -> Progress:
    """A tqdm bar on stderr when stderr is a terminal and the job is large; else nothing."""
    stream = stream or sys.stderr
    if not stream.isatty() or (total is not None and total < PROGRESS_MIN_ROWS):
        return _NoProgress()
    from tqdm import tqdm

    bar: Progress = tqdm(
        total=total, desc=desc, unit=" msg", unit_scale=True, file=stream, leave=False
    )
    return bar


@dataclass
class Player:
    """Writes the rows of a selection in one format to a binary stream."""

    log: Readable
    selection: Selection
    fmt: Format
    out: IO[bytes]
    pace: float | None = None
    flush: bool = False
    progress: Progress | None = None
    written: int = 0
    last_id: int = 0
    _last_time: datetime | None = None

    @property
    def remaining(self) -> int | None:
        limit = self.selection.limit
        return None if limit is None else limit - self.written

    async def play(self, reader: ReadOnly, selection: Selection) -> None:
        """Write every row ``selection`` selects."""
        sql, params = selection.query(self.fmt.columns(reader), reader)
        async for batch in reader.batches(sql, params):
            await self._emit(batch)

    async def _emit(self, rows: Sequence[Sequence[Any]]) -> None:
        remaining = self.remaining
        if remaining is not None:
            rows = rows[:remaining]
        if not rows:
            return
        if self.pace:
            for row in rows:
                await self._wait_for(self.fmt.sent_at(row))
                self.out.write(self.fmt.render([row]))
                self.out.flush()
        else:
            self.out.write(self.fmt.render(rows))
            if self.flush:
                self.out.flush()
        self.written += len(rows)
        self.last_id = self.fmt.row_id(rows[-1])
        if self.progress is not None:
            self.progress.update(len(rows))

    async def _wait_for(self, when: datetime) -> None:
        assert self.pace
        if self._last_time is not None:
            gap = abs((when - self._last_time).total_seconds()) / self.pace
            if gap > 0:
                await asyncio.sleep(gap)
        self._last_time = when

    async def follow(self, head: int) -> None:
        """After the range: print rows committed later, until the limit (or Ctrl-C).

        Each check is a short read transaction asking for ``max(id)``; only when it moved is
        the selection queried for ``last seen < id <= new max``. IDs are assigned and committed
        in order by the single writer, so nothing below the new max can still appear.
        """
        seen = max(head, self.last_id)
        delay = FOLLOW_MIN
        self.pace = None  # live rows arrive at their own pace; pacing them again would lag
        self.flush = True
        while self.remaining is None or self.remaining > 0:
            async with self.log.read_only() as reader:
                newest = await head_id(reader)
                if newest > seen:
                    await self.play(reader, self.selection.after(seen, newest))
                    seen = newest
                    delay = FOLLOW_MIN
                    continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, FOLLOW_MAX)


async def gap_note(reader: ReadOnly, selection: Selection) -> str | None:
    """Say so when the log starts later than asked because older rows were deleted.

    Asked is the range's start (ID 1 when the range has none and no time window is given).
    """
    if selection.start is None and selection.since is not None:
        return None
    # IDs start at 1: a range from 0 asks for nothing that could have been removed.
    asked = max(selection.start, 1) if selection.start is not None else 1
    floors = {
        str(room): int(floor)
        for room, floor in [
            tuple(row)
            async for batch in reader.batches(
                "SELECT room, purged_through FROM retention WHERE purged_through >= :asked "
                "ORDER BY room",
                {"asked": asked},
            )
            for row in batch
        ]
    }
    if selection.rooms:
        notes = []
        for room in selection.rooms:
            if room not in floors:
                continue
            first = await reader.scalar(
                "SELECT min(id) FROM messages WHERE room = :room AND id > :floor",
                {"room": room, "floor": floors[room]},
            )
            notes.append(
                f"room {room!r}: messages through ID {floors[room]} were removed by retention; "
                + (f"the first available ID is {first}" if first else "none are left")
            )
        return "; ".join(notes) or None
    first = await reader.scalar("SELECT min(id) FROM messages")
    if first is not None and int(first) <= asked and not floors:
        return None
    parts = []
    if first is None:
        if floors:
            parts.append("the log holds no messages")
    elif int(first) > asked:
        parts.append(
            f"IDs before {first} are no longer in the log; the first available ID is {first}"
        )
    if floors:
        shown = ", ".join(f"{room!r} through ID {n}" for room, n in list(floors.items())[:5])
        more = f" and {len(floors) - 5} more rooms" if len(floors) > 5 else ""
        parts.append(f"retention removed older messages of {shown}{more}")
    return "; ".join(parts) or None


async def head_id(reader: ReadOnly) -> int:
    """The newest message ID in the log (0 when it is empty)."""
    return int(await reader.scalar("SELECT max(id) FROM messages") or 0)


async def count(reader: ReadOnly, selection: Selection) -> int:
    """How many rows ``selection`` selects."""
    sql, params = selection.count_query(reader)
    return int(await reader.scalar(sql, params) or 0)
