"""Output for the history commands: terminal-safe text and the shared ``--format`` option.

``chatlog sql`` writes rows as a table (for a terminal), a JSON array, JSON lines or CSV, in the
manner of sqlite-utils. Anything that reaches a terminal goes through :func:`terminal_safe`
first, so chat text cannot move the cursor, retitle the window or reorder text with bidi marks.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import IO, Any, Final, TypeVar, cast

import click
import orjson

from chatlog.log.basics import STORED_TIME_FORMAT

FORMATS: Final = ("table", "json", "jsonl", "csv")
FC = TypeVar("FC", bound=Callable[..., Any])


def format_option() -> Callable[[FC], FC]:
    """``--format table|json|jsonl|csv``; unset means a table for a terminal, JSON otherwise."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=None,
        help="Output format (default: table when stdout is a terminal, json otherwise).",
    )


def choose_format(fmt: str | None, out: IO[bytes]) -> str:
    """The format asked for, or the default for where the output goes."""
    if fmt is not None:
        return fmt
    return "table" if out.isatty() else "json"


def _escape_char(char: str) -> str:
    if char == "\\":
        return "\\\\"
    # repr() spells \n, \t, \x1b, \u202e and friends the way a Python reader expects.
    return repr(char)[1:-1]


def terminal_safe(text: str) -> str:
    """``text`` with every non-printable character (and the backslash) written as an escape.

    Printable text, including non-ASCII letters and emoji, passes unchanged; controls, bidi
    overrides, line separators and other format characters become ``\\n``, ``\\x1b``,
    ``\\u202e`` and so on, so the result is one line that cannot drive a terminal.
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        char if char.isprintable() and char != "\\" else _escape_char(char) for char in text
    )


def _json_escape(char: str) -> str:
    code = ord(char)
    if code > 0xFFFF:  # as a JSON surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


class TerminalStream:
    """A binary stream for a terminal: every non-printable character except the newline is
    written as a JSON ``\\uXXXX`` escape.

    Inside JSON output that is the same value (JSON strings may spell any character that way),
    so ``replay --format jsonl`` or ``sql --format json`` on a terminal cannot carry a bidi
    override, a C1 control or a line separator to it either; piped output is left as it is.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw

    def write(self, data: bytes) -> int:
        text = data.decode("utf-8", "replace")
        if not text.replace("\n", "").isprintable():
            text = "".join(c if c.isprintable() or c == "\n" else _json_escape(c) for c in text)
        self.raw.write(text.encode())
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return True


def for_terminal(out: IO[bytes]) -> IO[bytes]:
    """``out`` itself, or a :class:`TerminalStream` around it when it is a terminal."""
    return cast(IO[bytes], TerminalStream(out)) if out.isatty() else out


def stored_time(value: datetime) -> str:
    """A timestamp as SQLite stores it (UTC, microseconds), so a PostgreSQL answer reads the
    same in every format."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime(STORED_TIME_FORMAT)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return stored_time(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": True, "encoded": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def json_value(value: Any) -> bytes:
    """One value (or row object) as compact JSON; BLOBs become ``{"$base64": true, ...}``."""
    return orjson.dumps(
        value,
        default=_json_default,
        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME,
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, datetime):
        return stored_time(value)
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _safe_cell(value: Any) -> str:
    return terminal_safe(_cell(value))


Batches = AsyncIterator[Sequence[Sequence[Any]]]


async def write_rows(columns: Sequence[str], batches: Batches, fmt: str, out: IO[bytes]) -> int:
    """Write every row of ``batches`` to ``out`` in ``fmt``; return how many rows there were."""
    count = 0
    if fmt == "table":
        rows: list[Sequence[Any]] = []
        async for batch in batches:
            rows.extend(batch)
        out.write(render_table(columns, rows).encode())
        return len(rows)
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        # On a terminal a cell's newline or escape is spelt \n, \x1b as in a table: one row,
        # one line. Piped, the cell is written exactly (quoted when it must be).
        cell = _safe_cell if out.isatty() else _cell
        writer.writerow(columns)
        async for batch in batches:
            writer.writerows([cell(v) for v in row] for row in batch)
            count += len(batch)
            out.write(text.getvalue().encode())
            text.seek(0)
            text.truncate()
        out.write(text.getvalue().encode())
        return count
    keys = list(columns)
    first = True
    if fmt == "json":
        out.write(b"[")
    async for batch in batches:
        lines = [json_value(dict(zip(keys, row, strict=True))) for row in batch]
        # Separators are written, not prepended: adding bytes to a batch copies all of it.
        if fmt == "jsonl":
            lines.append(b"")  # the last row's newline
            out.write(b"\n".join(lines))
        elif lines:
            if not first:
                out.write(b",\n")
            out.write(b",\n".join(lines))
            first = False
        count += len(batch)
    if fmt == "json":
        out.write(b"]\n")
    return count


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal: East Asian wide characters and emoji count two,
    combining marks none (``text`` is printable: :func:`terminal_safe` made it so)."""
    from wcwidth import wcswidth  # tables only: not worth its import to JSON or a pipe

    width = wcswidth(text)
    return width if width >= 0 else len(text)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table with a header rule, aligned by display width; cells are made
    terminal-safe."""
    head = [terminal_safe(str(c)) for c in columns]
    body = [[terminal_safe(_cell(v)) for v in row] for row in rows]
    widths = [display_width(h) for h in head]
    for row in body:
        widths = [max(w, display_width(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        all(isinstance(row[i], int | float | Decimal) or row[i] is None for row in rows)
        and any(row[i] is not None for row in rows)
        for i in range(len(columns))
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [_pad(c, w, num) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    lines = [line(head), "  ".join("-" * w for w in widths), *(line(r) for r in body)]
    return "\n".join(lines) + "\n"
