"""``chatlog search``: full-text search of the log from the command line, read-only.

Each result is the message's ``replay --format jsonl`` object (every column, in table order)
plus ``snippet``: the text around the first match as alternating segments, plain then
matched (odd positions are the matched words). The table and CSV formats show the snippet as
text with the matched words in ``[brackets]``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from typing import IO, Any, Final

import click

from chatlog.cli.common import db_option, db_url
from chatlog.cli.errors import BadInput
from chatlog.history import output, replay
from chatlog.log.open import open_log
from chatlog.log.schema import COLUMNS
from chatlog.log.search import MAX_RESULTS, Order, SearchRequest
from chatlog.log.search_query import BadQuery, Query, parse, snippet

#: What ``--format table`` shows of each result (the others show every column).
TABLE_COLUMNS: Final = ("id", "sent_at", "room", "author", "snippet")


def marked(segments: Sequence[str]) -> str:
    """A snippet as one line of text, the matched words in brackets."""
    return "".join(f"[{s}]" if i % 2 else s for i, s in enumerate(segments))


def result(row: Any, query: Query) -> dict[str, Any]:
    """One result: the replay JSON of the row, plus its snippet."""
    found = {column: getattr(row, column) for column in COLUMNS}
    found["snippet"] = snippet(row.text, query)
    return found


async def _batches(
    results: list[dict[str, Any]], columns: Sequence[str], flat: bool
) -> AsyncIterator[list[list[Any]]]:
    rows = []
    for found in results:
        if flat:
            found = {**found, "snippet": marked(found["snippet"])}
        if columns is TABLE_COLUMNS:  # to the second, as replay's transcript shows it
            found["sent_at"] = found["sent_at"].strftime("%Y-%m-%d %H:%M:%S")
        rows.append([found[c] for c in columns])
    if rows:
        yield rows


async def _search(url: str, request: SearchRequest, fmt: str, out: IO[bytes]) -> int:
    backend = open_log(url, access="read")
    try:
        async with backend.read_only() as reader:
            rows = await backend.search_index.find(reader.connection(), request)
    finally:
        await backend.dispose()
    results = [result(row, request.query) for row in rows]
    if not results and fmt != "json":
        return 0
    columns = TABLE_COLUMNS if fmt == "table" else (*COLUMNS, "snippet")
    await output.write_rows(columns, _batches(results, columns, fmt in ("table", "csv")), fmt, out)
    return len(results)


@click.command(name="search")
@click.argument("query")
@db_option()
@click.option("--room", "rooms", multiple=True, help="Only this room. Repeatable.")
@click.option("--author", "authors", multiple=True, help="Only this author. Repeatable.")
@click.option(
    "--since",
    metavar="TIME",
    help="From this time on (ISO-8601, UTC unless a zone is given, or -2h, -30m, -1d).",
)
@click.option("--until", metavar="TIME", help="Before this time (same forms).")
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=MAX_RESULTS),
    default=20,
    show_default=True,
    help="At most this many results.",
)
@click.option(
    "--order",
    type=click.Choice(["newest", "rank"]),
    default="newest",
    show_default=True,
    help="newest: newest first; rank: best match first.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(output.FORMATS),
    default=None,
    help="Output format (default: table when stdout is a terminal, jsonl otherwise).",
)
def search_command(
    query: str,
    db: str | None,
    rooms: tuple[str, ...],
    authors: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    order: Order,
    fmt: str | None,
) -> None:
    """Find messages by their words: QUERY is words (all must match), "quoted phrases",
    -word to exclude, OR between two words, and word* for a prefix.

    Case and accents do not matter (cafe finds Café), and a Chinese or Japanese word is found
    inside a sentence. Newest first. Nothing found: no output, exit 0.

    \b
    Example:
        chatlog search --db chat.db 'deploy "release notes" -draft'
        chatlog search --db chat.db --room lobby --since -1w --format json 'caf*'
    """
    try:
        parsed = parse(query)
        request = SearchRequest(
            parsed,
            rooms=rooms,
            authors=authors,
            since=replay.parse_time(since) if since is not None else None,
            until=replay.parse_time(until) if until is not None else None,
            limit=limit,
            order=order,
        )
    except BadQuery as exc:
        raise BadInput(f"bad query: {exc}") from None
    except replay.SelectionError as exc:
        raise BadInput(str(exc)) from None
    raw = sys.stdout.buffer
    chosen = fmt or ("table" if raw.isatty() else "jsonl")
    asyncio.run(_search(db_url(db), request, chosen, output.for_terminal(raw)))
