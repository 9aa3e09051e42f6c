"""``chatlog replay``, ``export`` and ``import``: the log from the command line.

Every command but ``import`` opens the log read-only and refuses a path where there is no
database (it never creates one); all of them work while the server runs. Failures are reported
by the CLI's one policy (:mod:`chatlog.cli.errors`): one ``Error:`` line, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from chatlog.cli.common import db_option, db_url
from chatlog.cli.errors import BadInput, interrupt_ends_run
from chatlog.cli.schema import require_current
from chatlog.history import output, playback, replay
from chatlog.log.open import open_reader

FC = TypeVar("FC", bound=Callable[..., Any])


def _stdout() -> IO[bytes]:
    return sys.stdout.buffer


def _show_progress(out: IO[bytes]) -> bool:
    # On a shared terminal the rows themselves show progress; a bar would garble them.
    return sys.stderr.isatty() and not out.isatty()


# --- selection options shared by replay and export ------------------------------------------


def selection_options(func: FC) -> FC:
    """RANGE, ``--since``, ``--until``, ``--room``, ``--author``, ``--limit``."""
    for decorator in reversed(
        [
            click.argument("range_", metavar="[RANGE]", required=False),
            db_option(),
            click.option(
                "--since",
                metavar="TIME",
                help="From this time on (ISO-8601, UTC unless a zone is given, or -2h, -30m, -1d).",
            ),
            click.option("--until", metavar="TIME", help="Before this time (same forms)."),
            click.option("--room", "rooms", multiple=True, help="Only this room. Repeatable."),
            click.option(
                "--author", "authors", multiple=True, help="Only this author. Repeatable."
            ),
            click.option("--limit", type=click.IntRange(min=1), help="At most this many messages."),
        ]
    ):
        func = decorator(func)
    return func


def build_selection(
    range_: str | None,
    since: str | None,
    until: str | None,
    rooms: tuple[str, ...],
    authors: tuple[str, ...],
    limit: int | None,
    reverse: bool = False,
) -> replay.Selection:
    """The :class:`~chatlog.history.replay.Selection` the options describe (or a one-line error)."""
    try:
        start, end = replay.parse_range(range_) if range_ is not None else (None, None)
        return replay.Selection(
            start=start,
            end=end,
            since=replay.parse_time(since) if since is not None else None,
            until=replay.parse_time(until) if until is not None else None,
            rooms=rooms,
            authors=authors,
            limit=limit,
            reverse=reverse,
        )
    except replay.SelectionError as exc:
        raise BadInput(str(exc)) from None


async def _play(
    url: str,
    selection: replay.Selection,
    fmt: replay.Format,
    out: IO[bytes],
    *,
    follow: bool = False,
    pace: float | None = None,
    desc: str = "replay",
) -> int:
    backend = open_reader(url, inline=True)
    bar: playback.Progress | None = None
    try:
        await require_current(backend)
        player = playback.Player(backend, selection, fmt, out, pace=pace, flush=follow)
        async with backend.read_only() as log:
            note = await playback.gap_note(log, selection)
            if note:
                click.echo(f"note: {note}", err=True)
            if _show_progress(out) and not pace:
                bar = playback.progress_bar(await playback.count(log, selection), desc=desc)
                player.progress = bar
            await player.play(log, selection)
            head = await playback.head_id(log)
        if bar is not None:
            bar.close()
        out.flush()
        if follow:
            await player.follow(head)
        return player.written
    finally:
        await backend.dispose()


# --- chatlog replay ------------------------------------------------------------------------


@click.command(name="replay")
@selection_options
@click.option("--reverse", is_flag=True, help="Newest first (with --limit: the newest N).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(replay.FORMATS),
    default="text",
    show_default=True,
    help="text: a transcript; jsonl: every column; wire: the Chat frames the server sent.",
)
@click.option(
    "--follow", "-f", is_flag=True, help="Then print new messages as they arrive (Ctrl-C ends)."
)
@click.option(
    "--pace",
    type=click.FloatRange(min=0, min_open=True),
    is_flag=False,
    flag_value=1.0,
    default=None,
    metavar="[FACTOR]",
    help="Keep the original gaps between messages, FACTOR times faster (default 1).",
)
def replay_command(
    range_: str | None,
    db: str | None,
    since: str | None,
    until: str | None,
    rooms: tuple[str, ...],
    authors: tuple[str, ...],
    limit: int | None,
    reverse: bool,
    fmt: str,
    follow: bool,
    pace: float | None,
) -> None:
    """Print the messages of RANGE (IDs): 100..200 (inclusive), 100.., ..200, or 100.

    Without RANGE the whole log; narrow it with a time window, rooms and authors. Output is
    exactly what the matching SELECT ... ORDER BY id returns, row for row. When older messages
    were removed (the log starts later than asked) a note on stderr says where it starts.

    \b
    Example:
        chatlog replay 100..200 --db chat.db
        chatlog replay --db chat.db --room lobby --since -2h --format jsonl
        chatlog replay --db chat.db --follow
    """
    selection = build_selection(range_, since, until, rooms, authors, limit, reverse)
    if follow and reverse:
        raise BadInput("--follow cannot be combined with --reverse")
    if follow and (selection.end is not None or selection.until is not None):
        raise BadInput("--follow needs an open range: drop the end ID or --until")
    out = output.for_terminal(_stdout())
    url = db_url(db)
    with interrupt_ends_run(follow or pace is not None):
        asyncio.run(
            _play(
                url,
                selection,
                replay.get_format(fmt, with_time=pace is not None),
                out,
                follow=follow,
                pace=pace,
            )
        )


# --- chatlog export / import ---------------------------------------------------------------


@contextlib.contextmanager
def _target(path: str) -> Iterator[IO[bytes]]:
    """Standard output for ``-``; otherwise a temp file renamed over ``path`` on success only."""
    if path == "-":
        yield output.for_terminal(_stdout())
        return
    import tempfile  # export -o only

    final = Path(path)
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed or removed below
            dir=final.parent if str(final.parent) else ".", prefix=f".{final.name}.", delete=False
        )
    except OSError as exc:
        raise _naming(exc, final) from None
    try:
        with handle:
            yield handle
        umask = os.umask(0)
        os.umask(umask)
        try:
            os.chmod(handle.name, 0o666 & ~umask)  # as open() would have made it, not 0600
            os.replace(handle.name, final)
        except OSError as exc:
            raise _naming(exc, final) from None
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _naming(exc: OSError, final: Path) -> OSError:
    """The same failure, about the file asked for rather than the temporary one beside it."""
    return OSError(exc.errno, exc.strerror, str(final))


@click.command(name="export")
@selection_options
@click.option(
    "-o",
    "--output",
    "target",
    default="-",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write to this file (replaced only when the export is complete). Default: stdout.",
)
def export_command(
    range_: str | None,
    db: str | None,
    since: str | None,
    until: str | None,
    rooms: tuple[str, ...],
    authors: tuple[str, ...],
    limit: int | None,
    target: str,
) -> None:
    """Write the log (or a selection, as for replay) as JSON lines with every column.

    One object per message in ID order, ids included; `chatlog import` loads it into an
    empty database, and exporting that again gives the same bytes.

    \b
    Example:
        chatlog export --db chat.db -o chat.jsonl
        chatlog export 1000.. --db chat.db --room lobby > lobby.jsonl
    """
    selection = build_selection(range_, since, until, rooms, authors, limit)
    url = db_url(db)
    with _target(target) as out:
        count = asyncio.run(_play(url, selection, replay.JsonlFormat(), out, desc="export"))
    if target != "-":
        click.echo(f"exported {count} messages to {target}", err=True)


@click.command(name="import")
@click.argument("file", metavar="FILE|-")
@db_option()
@click.option(
    "--max-message-bytes",
    type=click.IntRange(min=64),
    default=65536,
    envvar="CHATLOG_MAX_MESSAGE_BYTES",
    show_default=True,
    help="Largest raw frame a row may hold: the server's --max-message-bytes.",
)
def import_command(file: str, db: str | None, max_message_bytes: int) -> None:
    """Load a `chatlog export` file (or - for stdin) into an empty database, keeping IDs.

    Every line is checked first; the first bad one is reported by number and nothing is
    written. The database is created and migrated if the file does not exist; an existing
    one must hold no messages. New messages later get IDs above the imported ones.

    \b
    Example:
        chatlog import chat.jsonl --db restored.db
        chatlog export --db old.db | chatlog import - --db new.db
    """
    from chatlog.history import transfer  # SQLAlchemy: only import needs it here

    url = db_url(db)
    if file == "-":
        source: IO[bytes] = sys.stdin.buffer
    else:
        try:
            source = open(file, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise BadInput(f"cannot read {file}: {exc.strerror}") from None
    with source, transfer.spool(source) as seekable:
        count = asyncio.run(
            transfer.import_log(
                url,
                seekable,
                lambda total: playback.progress_bar(total, desc="import"),
                max_message_bytes,
            )
        )
    click.echo(f"imported {count} messages into {db or 'chatlog.db'}")
