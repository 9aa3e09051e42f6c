"""Replay: which messages a range means, the SQL that selects them, and how rows are written.

A :class:`Selection` (an ID range, a time window, rooms, authors, a limit, a direction) turns into
exactly one ``SELECT ... FROM messages WHERE ... ORDER BY id``; replay and export print what
that query returns, row for row, in one of three :data:`FORMATS`:

* ``text``: ``ID TIME [ROOM] <AUTHOR> TEXT``, one line per message, terminal-safe; an edited
  message ends in ``(edited)``, a deleted one reads ``(deleted)``, and the events say what
  they did (``(edit of 12) new text``, ``(deleted 12)``);
* ``jsonl``: one JSON object per row with every column (``sent_at`` as ISO-8601 UTC);
* ``wire``: the Chat frame the server sent for the row, byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from chatlog.history.output import terminal_safe
from chatlog.log.basics import COLUMNS, STORED_TIME_FORMAT
from chatlog.log.readonly import ReadOnly

FORMATS: Final = ("text", "jsonl", "wire")
_ID, _ROOM, _WS, _AUTHOR, _RAW, _SENT = 0, 1, 2, 3, 6, 7
_KIND, _TARGET, _EDITED, _DELETED = 9, 10, 11, 12
#: Times of a row besides ``sent_at``, written like it in JSON lines (None stays null).
_TIMES: Final = (_EDITED, _DELETED)


class SelectionError(ValueError):
    """A range, time or option combination that selects nothing sensible; one line for people."""


_RANGE = re.compile(r"(\d+)?(\.\.)?(\d+)?")
_RELATIVE = re.compile(r"-?(\d+(?:\.\d+)?)(s|m|h|d|w)")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_range(text: str) -> tuple[int | None, int | None]:
    """``100..200`` (inclusive), ``100..``, ``..200`` or ``100`` as ``(start, end)``."""
    match = _RANGE.fullmatch(text.strip())
    if not match or not text.strip() or (match[2] is None and match[3] is not None):
        raise SelectionError(
            f"bad range {text!r}: use START..END, START.., ..END or ID (e.g. 100..200)"
        )
    start = int(match[1]) if match[1] is not None else None
    end = int(match[3]) if match[3] is not None else None
    if match[2] is None:
        end = start
    elif start is None and end is None:
        raise SelectionError("bad range '..': leave RANGE out to select the whole log")
    if start is not None and end is not None and start > end:
        raise SelectionError(
            f"bad range {text!r}: the start is after the end (use --reverse for newest first)"
        )
    return start, end


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO-8601 (a zone-less time is UTC) or relative to now (``-2h``, ``-30m``, ``-1d``, ``-90s``,
    ``-1w``), as naive UTC like the log's timestamps."""
    value = text.strip()
    now = now or datetime.now(UTC).replace(tzinfo=None)
    relative = _RELATIVE.fullmatch(value)
    if relative:
        return now - timedelta(seconds=float(relative[1]) * _UNITS[relative[2]])
    if value == "now":
        return now
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise SelectionError(
            f"bad time {text!r}: use ISO-8601 like 2026-11-25T14:00:00 (UTC unless a zone "
            "is given) or a relative time like -2h, -30m, -1d"
        ) from None
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when


@dataclass(frozen=True)
class Selection:
    """Which messages: IDs ``start..end`` (inclusive), ``since <= sent_at < until``, rooms,
    authors, at most ``limit`` rows, oldest first unless ``reverse``."""

    start: int | None = None
    end: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    rooms: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    limit: int | None = None
    reverse: bool = False

    def where(self, reader: ReadOnly) -> tuple[str, dict[str, Any]]:
        """The ``WHERE`` clause (``1=1`` for everything) and its bound parameters."""
        conds: list[str] = []
        params: dict[str, Any] = {}
        if self.start is not None:
            conds.append("id >= :start")
            params["start"] = self.start
        if self.end is not None:
            conds.append("id <= :end")
            params["end"] = self.end
        for name, op, when in (("since", ">=", self.since), ("until", "<", self.until)):
            if when is not None:
                conds.append(f"sent_at {op} :{name}")
                params[name] = reader.bind_time(when)
        for column, values in (("room", self.rooms), ("author", self.authors)):
            if values:
                names = [f"{column}{i}" for i in range(len(values))]
                conds.append(f"{column} IN ({', '.join(':' + n for n in names)})")
                params.update(zip(names, values, strict=True))
        return " AND ".join(conds) or "1=1", params

    def query(self, columns: str, reader: ReadOnly) -> tuple[str, dict[str, Any]]:
        """``SELECT columns FROM messages`` for this selection, in ID order (or reversed)."""
        where, params = self.where(reader)
        sql = f"SELECT {columns} FROM messages WHERE {where} ORDER BY id"
        if self.reverse:
            sql += " DESC"
        if self.limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = self.limit
        return sql, params

    def count_query(self, reader: ReadOnly) -> tuple[str, dict[str, Any]]:
        """How many rows :meth:`query` returns (for a progress bar)."""
        inner, params = replace(self, reverse=False).query("1", reader)
        return f"SELECT count(*) FROM ({inner}) AS selected", params

    def after(self, last_id: int, upto: int) -> Selection:
        """The rows of this selection with ``last_id < id <= upto`` (for ``--follow``)."""
        start = last_id + 1 if self.start is None else max(self.start, last_id + 1)
        return replace(self, start=start, end=upto, limit=None, reverse=False)


# --- formats -----------------------------------------------------------------------------


def as_datetime(value: Any) -> datetime:
    """``sent_at`` as a naive UTC datetime, whether the driver gave text or a datetime."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value if value.tzinfo is None else _utc(value)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def sql_time(value: Any) -> str:
    """A time the way SQLite stores ``sent_at`` and ``chatlog sql`` prints it:
    ``2026-11-25 20:21:15.409091`` (UTC). Used for JSON lines, so replay's JSON equals the SQL
    answer's, and for bound times on SQLite, so text comparison orders correctly."""
    return as_datetime(value).strftime(STORED_TIME_FORMAT)


class Format:
    """How one output format selects and renders rows (``id`` is always column 0)."""

    name: str = ""

    def columns(self, reader: ReadOnly) -> str:
        """The SQL select list."""
        return ", ".join(COLUMNS)

    def render(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """A batch of rows as output bytes, one line per row."""
        raise NotImplementedError

    def row_id(self, row: Sequence[Any]) -> int:
        """The message ID of a selected row."""
        return int(row[_ID])

    def sent_at(self, row: Sequence[Any]) -> datetime:
        """When the row's message was sent (for ``--pace``)."""
        return as_datetime(row[_SENT])


#: What a text line shows, in this order: the long columns (``raw``, ``message``) stay in the
#: database instead of becoming a Python string per row that nothing reads.
TEXT_COLUMNS: Final = (
    "id",
    "sent_at",
    "room",
    "author",
    "text",
    "kind",
    "target_id",
    "edited_at",
    "deleted_at",
)


class TextFormat(Format):
    name = "text"

    def columns(self, reader: ReadOnly) -> str:
        return ", ".join(TEXT_COLUMNS)

    def sent_at(self, row: Sequence[Any]) -> datetime:
        return as_datetime(row[1])

    def render(self, rows: Sequence[Sequence[Any]]) -> bytes:
        lines = []
        for msg_id, sent, room, author, text, kind, target, edited, deleted in rows:
            if kind != "chat" or edited is not None or deleted is not None or type(text) is not str:
                text = _shown_text(text, kind, target, edited, deleted)
            both = room + author + text  # one check for the usual, harmless row
            if not both.isprintable() or "\\" in both:
                room, author, text = terminal_safe(room), terminal_safe(author), terminal_safe(text)
            # SQLite hands back the stored text, whose first 19 characters are the time to the
            # second: slicing it is several times cheaper than formatting a datetime per row.
            when = sent[:19] if type(sent) is str and len(sent) >= 19 else _seconds(sent)
            lines.append(f"{msg_id} {when.replace('T', ' ')} [{room}] <{author}> {text}\n")
        return "".join(lines).encode()


def _seconds(value: Any) -> str:
    from chatlog.protocol import format_sent  # a datetime (PostgreSQL); SQLite text is sliced

    return format_sent(as_datetime(value))


def _shown_text(text: Any, kind: str, target: Any, edited: Any, deleted: Any) -> str:
    """What the text line says for a row: its text, marked when edited or deleted."""
    if kind == "edit":
        return f"(edit of {target}) {text}" if deleted is None else f"(edit of {target})"
    if kind == "delete":
        return f"(deleted {target})"
    if deleted is not None:
        return "(deleted)"
    return f"{text} (edited)" if edited is not None else str(text)


class JsonlFormat(Format):
    """On SQLite one column, the finished line (plus ``sent_at`` first when pacing); elsewhere
    every column, turned into the same JSON by orjson."""

    name = "jsonl"

    def __init__(self, *, with_time: bool = False) -> None:
        self.with_time = with_time

    def columns(self, reader: ReadOnly) -> str:
        json_row = reader.json_row(COLUMNS)
        if json_row is not None:
            return f"sent_at, {json_row}" if self.with_time else json_row
        return super().columns(reader)

    def sent_at(self, row: Sequence[Any]) -> datetime:
        return as_datetime(row[0] if len(row) == 2 else row[_SENT])

    def row_id(self, row: Sequence[Any]) -> int:
        if len(row) <= 2:
            return int(orjson.loads(row[-1])["id"])
        return int(row[_ID])

    def render(self, rows: Sequence[Sequence[Any]]) -> bytes:
        if rows and len(rows[0]) <= 2:
            lines = [r[-1] for r in rows]
            lines.append(b"")  # the last line's newline, without copying the batch again
            return b"\n".join(lines)
        return b"".join(json_line(r) + b"\n" for r in rows)


def json_line(row: Sequence[Any]) -> bytes:
    """One row (every column, in table order) as the JSON lines object."""
    values = list(row)
    values[_SENT] = sql_time(values[_SENT])
    for column in _TIMES:
        if values[column] is not None:
            values[column] = sql_time(values[column])
    return orjson.dumps(dict(zip(COLUMNS, values, strict=True)))


class WireFormat(Format):
    name = "wire"

    def render(self, rows: Sequence[Sequence[Any]]) -> bytes:
        # The frame builders, only here: text and JSON lines start without them.
        from chatlog.log.model import StoredMessage, stored_fields
        from chatlog.protocol import encode

        return b"".join(
            encode(
                StoredMessage(
                    r[_ID],
                    r[_ROOM],
                    r[_WS],
                    r[_AUTHOR],
                    stored_fields(r[_RAW]),
                    as_datetime(r[_SENT]),
                    kind=r[_KIND],
                    target=r[_TARGET],
                    edited_at=None if r[_EDITED] is None else as_datetime(r[_EDITED]),
                    deleted_at=None if r[_DELETED] is None else as_datetime(r[_DELETED]),
                ).frame()
            )
            + b"\n"
            for r in rows
        )


def get_format(name: str, *, with_time: bool = False) -> Format:
    """The :class:`Format` called ``name`` (one of :data:`FORMATS`); ``with_time`` selects
    ``sent_at`` too where it would otherwise be left out (``--pace`` needs it)."""
    if name == "jsonl":
        return JsonlFormat(with_time=with_time)
    return {"text": TextFormat, "wire": WireFormat}[name]()
