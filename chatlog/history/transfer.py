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
from pathlib import Path
from typing import IO, Any, Final

import orjson
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.history.playback import Progress
from chatlog.history.replay import COLUMNS, as_datetime
from chatlog.log import db
from chatlog.log.readonly import reading
from chatlog.log.schema import STORED_TIME_FORMAT, messages
from chatlog.protocol import ProtocolError, loads
from chatlog.settings import sqlite_path

INSERT_BATCH: Final = 5000
_MAX_ID: Final = 2**63 - 1
_LIMITS: Final = {"room": 64, "ws_id": 32, "author": 64, "nonce": 64}


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


def _check_row(number: int, obj: Any, previous_id: int) -> dict[str, Any]:
    def bad(why: str) -> ImportFailed:
        return ImportFailed(f"line {number}: {why}")

    if not isinstance(obj, dict):
        raise bad("not a JSON object")
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
    try:
        obj["sent_at"] = as_datetime(obj["sent_at"])
    except ValueError:
        raise bad(f"sent_at {obj['sent_at']!r} is not an ISO-8601 time") from None
    return obj


def read_rows(source: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Validated rows with their line numbers; raises :class:`ImportFailed` at the first bad one."""
    previous_id = 0
    nonces: dict[tuple[str, str], int] = {}
    source.seek(0)
    for number, line in enumerate(source, 1):
        stripped = line.rstrip(b"\r\n")
        if not stripped.strip():
            raise ImportFailed(f"line {number}: empty line")
        try:
            obj = loads(stripped.decode("utf-8"))
        except UnicodeDecodeError:
            raise ImportFailed(f"line {number}: not UTF-8") from None
        except ProtocolError as exc:
            raise ImportFailed(f"line {number}: {exc.message}") from None
        row = _check_row(number, obj, previous_id)
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


def validate(source: IO[bytes]) -> tuple[int, int]:
    """Check every line; return (rows, first id)."""
    rows, first = 0, 0
    for _number, row in read_rows(source):
        rows += 1
        first = first or row["id"]
    return rows, first


def _fast_rows(source: IO[bytes]) -> Iterator[dict[str, Any]]:
    # The second pass reads lines already validated, so plain orjson is enough.
    source.seek(0)
    for line in source:
        row = orjson.loads(line)
        row["sent_at"] = as_datetime(row["sent_at"])
        yield row


async def _ensure_empty(conn: AsyncConnection, first_id: int) -> None:
    held = (await conn.execute(text("SELECT count(*) FROM messages"))).scalar()
    if held:
        raise ImportFailed(
            f"the database already holds {held} messages; import loads only into an empty log"
        )
    if conn.dialect.name in ("sqlite", "postgresql"):
        seq = (
            await conn.execute(
                text(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'messages'"
                    if conn.dialect.name == "sqlite"
                    else "SELECT pg_sequence_last_value(pg_get_serial_sequence('messages', 'id'))"
                )
            )
        ).scalar()
        if seq is not None and int(seq) >= first_id:
            raise ImportFailed(
                f"this database has held messages up to ID {seq}, and IDs are never reused; "
                "import into a new database"
            )


async def _precheck(url: str, first_id: int) -> None:
    """Refuse a non-empty log before migrating or writing anything."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return
    engine = db.make_engine(url, readonly=True)
    try:
        async with reading(engine) as reader:
            tables = await reader.scalar(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'messages'"
                if reader.dialect == "sqlite"
                else "SELECT count(*) FROM information_schema.tables WHERE table_name = 'messages'"
            )
            if tables:
                await _ensure_empty(reader.conn, first_id)
    finally:
        await engine.dispose()


_SQLITE_INSERT: Final = (
    f"INSERT INTO messages ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)


async def _insert(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert validated rows, ``sent_at`` stored exactly as the server stores it."""
    if conn.dialect.name != "sqlite":
        await conn.execute(insert(messages), rows)
        return
    # Plain executemany with tuples: several times faster than Core's per-row dict handling.
    for row in rows:
        row["sent_at"] = row["sent_at"].strftime(STORED_TIME_FORMAT)
    await conn.exec_driver_sql(_SQLITE_INSERT, [tuple(row[c] for c in COLUMNS) for row in rows])


def _remove_database(path: Path) -> None:
    """Undo a database file this import created (it failed before holding anything)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def import_log(url: str, source: IO[bytes], make_progress: Callable[[int], Progress]) -> int:
    """Validate ``source`` and load it into the empty log at ``url``; return the row count."""
    total, first_id = validate(source)
    if total == 0:
        raise ImportFailed("the file holds no rows; nothing to import")
    await _precheck(url, first_id)
    progress = make_progress(total)
    path = sqlite_path(url)
    created = path is not None and not path.exists()
    try:
        async with db.open_engine(url) as engine, engine.connect() as conn:
            conn = await conn.execution_options(immediate=True)
            async with conn.begin():
                await _ensure_empty(conn, first_id)
                batch: list[dict[str, Any]] = []
                last = 0
                for row in _fast_rows(source):
                    batch.append(row)
                    if len(batch) >= INSERT_BATCH:
                        await _insert(conn, batch)
                        progress.update(len(batch))
                        batch = []
                    last = row["id"]
                if batch:
                    await _insert(conn, batch)
                    progress.update(len(batch))
                if conn.dialect.name == "postgresql":
                    # Later messages must get higher IDs than the imported ones.
                    await conn.execute(
                        text("SELECT setval(pg_get_serial_sequence('messages', 'id'), :last)"),
                        {"last": last},
                    )
    except BaseException:
        if created and path is not None:
            _remove_database(path)
        raise
    finally:
        progress.close()
    return total
