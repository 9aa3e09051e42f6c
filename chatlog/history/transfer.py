"""``chatlog import``: load a JSON lines export into an empty log, keeping every ID.

All or nothing: the whole file is validated first (strict JSON, every column, increasing IDs,
unique nonces per room) and the first bad line is reported by number before the database is
even opened; then every row goes in inside one transaction. Export is
:class:`chatlog.history.playback.Player` with the ``jsonl`` format; import stores ``sent_at``
the way the server does, so export, import, export gives the same bytes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any, Final

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.history import row_rules
from chatlog.history.playback import Progress
from chatlog.history.replay import as_datetime
from chatlog.log.backend import LogBackend
from chatlog.log.open import open_log
from chatlog.log.schema import COLUMNS
from chatlog.protocol import ProtocolError, loads

INSERT_BATCH: Final = 5000
_MAX_ID: Final = 2**63 - 1
_LIMITS: Final = {"room": 64, "ws_id": 32, "author": 64, "nonce": 64}
#: Columns added after the first export format (edits, migration 0004): an older export
#: without them imports as plain chat rows.
_LATER: Final = {"kind": "chat", "target_id": None, "edited_at": None, "deleted_at": None}
_KINDS: Final = ("chat", "edit", "delete")


class ImportFailed(Exception):
    """The file or the target database cannot be imported; one line for people."""


def spool(source: IO[bytes]) -> IO[bytes]:
    """A seekable copy of ``source`` (standard input is read once, validated, then loaded)."""
    if source.seekable():
        return source
    copy = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
    shutil.copyfileobj(source, copy, 1 << 20)
    copy.seek(0)
    return copy


def _check_row(number: int, obj: Any, previous_id: int, max_bytes: int = 65536) -> dict[str, Any]:
    def bad(why: str) -> ImportFailed:
        return ImportFailed(f"line {number}: {why}")

    if not isinstance(obj, dict):
        raise bad("not a JSON object")
    for column, default in _LATER.items():
        obj.setdefault(column, default)
    missing = [c for c in COLUMNS if c not in obj]
    if missing:
        raise bad(f"missing key {missing[0]!r}")
    extra = [k for k in obj if k not in COLUMNS]
    if extra:
        raise bad(f"unknown key {extra[0]!r}")
    msg_id = obj["id"]
    if type(msg_id) is not int or not 0 < msg_id <= _MAX_ID:
        raise bad(f"id must be a positive integer, not {msg_id!r}")
    if msg_id <= previous_id:
        raise bad(f"id {msg_id} is not above the previous line's id {previous_id}")
    for column in ("room", "ws_id", "author", "message", "text", "raw", "sent_at"):
        if not isinstance(obj[column], str):
            raise bad(f"{column} must be a string")
    for column, limit in _LIMITS.items():
        value = obj[column]
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= limit):
            raise bad(f"{column} must be a string of 1 to {limit} characters")
    try:
        frame = loads(obj["raw"])
    except ProtocolError as exc:
        raise bad(f"raw is not the JSON of a chat frame ({exc.message})") from None
    if not isinstance(frame, dict):
        raise bad("raw is not the JSON object of a chat frame")
    if obj["kind"] not in _KINDS:
        raise bad(f"kind must be one of {', '.join(_KINDS)}, not {obj['kind']!r}")
    target = obj["target_id"]
    if (obj["kind"] == "chat") != (target is None) or (
        target is not None and (type(target) is not int or not 0 < target < msg_id)
    ):
        raise bad("target_id must be null for a chat row, an earlier row's id for an event")
    for column in ("sent_at", "edited_at", "deleted_at"):
        if obj[column] is None and column != "sent_at":
            continue
        try:
            obj[column] = as_datetime(obj[column])
        except (ValueError, TypeError):
            raise bad(f"{column} {obj[column]!r} is not an ISO-8601 time") from None
    why = row_rules.content_error(obj, max_bytes)
    if why is not None:
        raise bad(why)
    return obj


def read_rows(source: IO[bytes], max_bytes: int = 65536) -> Iterator[tuple[int, dict[str, Any]]]:
    """Validated rows with their line numbers; raises :class:`ImportFailed` at the first bad one.
    ``max_bytes`` is the server's ``--max-message-bytes``; no longer line is even read whole."""
    previous_id = 0
    nonces: dict[tuple[str, str], int] = {}
    source.seek(0)
    longest = row_rules.max_line_bytes(max_bytes)
    for number, line in enumerate(iter(lambda: source.readline(longest + 1), b""), 1):
        if len(line) > longest:
            raise ImportFailed(f"line {number}: longer than {longest} bytes")
        stripped = line.rstrip(b"\r\n")
        if not stripped.strip():
            raise ImportFailed(f"line {number}: empty line")
        try:
            obj = loads(stripped.decode("utf-8"))
        except UnicodeDecodeError:
            raise ImportFailed(f"line {number}: not UTF-8") from None
        except ProtocolError as exc:
            # The strict parser speaks of client frames; here the thing is a line of the file.
            why = exc.message.replace("the frame is", "it is").replace("the frame", "the line")
            raise ImportFailed(f"line {number}: {why}") from None
        row = _check_row(number, obj, previous_id, max_bytes)
        previous_id = row["id"]
        if row["nonce"] is not None:
            key = (row["room"], row["nonce"])
            if key in nonces:
                raise ImportFailed(
                    f"line {number}: nonce {row['nonce']!r} repeats line {nonces[key]} in room "
                    f"{row['room']!r}"
                )
            nonces[key] = number
        yield number, row


def validate(source: IO[bytes], max_bytes: int = 65536) -> tuple[int, int]:
    """Check every line; return (rows, first id)."""
    rows, first = 0, 0
    for _number, row in read_rows(source, max_bytes):
        rows += 1
        first = first or row["id"]
    return rows, first


def _fast_rows(source: IO[bytes]) -> Iterator[dict[str, Any]]:
    # The second pass reads lines already validated, so plain orjson is enough.
    source.seek(0)
    for line in source:
        row = {**_LATER, **orjson.loads(line)}
        for column in ("sent_at", "edited_at", "deleted_at"):
            if row[column] is not None:
                row[column] = as_datetime(row[column])
        yield row


async def _ensure_empty(log: LogBackend, conn: AsyncConnection, first_id: int) -> None:
    held = (await conn.execute(text("SELECT count(*) FROM messages"))).scalar()
    if held:
        raise ImportFailed(
            f"the database already holds {held} messages; import loads only into an empty log"
        )
    seq = await log.highest_id_ever(conn)
    if seq is not None and seq >= first_id:
        raise ImportFailed(
            f"this database has held messages up to ID {seq}, and IDs are never reused; "
            "import into a new database"
        )


async def import_log(
    url: str,
    source: IO[bytes],
    make_progress: Callable[[int], Progress],
    max_bytes: int = 65536,
) -> int:
    """Validate ``source`` and load it into the empty log at ``url``; return the row count."""
    total, first_id = validate(source, max_bytes)
    # An empty export (an empty log) imports as an empty, migrated log.
    first_id = first_id or 1
    log = open_log(url)
    progress = make_progress(total)
    try:
        try:
            # Refuse a non-empty log before migrating or writing anything.
            if await log.has_messages_table():
                async with log.engine.connect() as conn:
                    await _ensure_empty(log, conn, first_id)
            await log.migrate()
            async with log.transaction() as conn:
                await _ensure_empty(log, conn, first_id)
                await _load(log, conn, source, progress)
        finally:
            await log.dispose()
    except BaseException:
        log.remove_if_new()
        raise
    finally:
        progress.close()
    return total


async def _load(
    log: LogBackend, conn: AsyncConnection, source: IO[bytes], progress: Progress
) -> None:
    batch: list[dict[str, Any]] = []
    last = 0
    for row in _fast_rows(source):
        batch.append(row)
        if len(batch) >= INSERT_BATCH:
            await log.insert_rows(conn, batch)
            progress.update(len(batch))
            batch = []
        last = row["id"]
    if batch:
        await log.insert_rows(conn, batch)
        progress.update(len(batch))
    await log.ids_imported(conn, last)
