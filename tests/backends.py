"""The logs under test: a fresh one on SQLite or PostgreSQL, SQL rows read from either, and a
log the real server wrote over real sockets for the history commands' tests (replay, export,
import, sql)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.engine import make_url

from chatlog.settings import Settings
from tests.helpers import in_thread, skip_or_fail, start_server
from tests.wsclients import b64, ws_url

# --- a fresh log on either backend, and its rows ---------------------------------------------

POSTGRES_ENV = "CHATLOG_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgres")


def is_postgres(db: str | Path) -> bool:
    return str(db).startswith(("postgresql", "postgres://"))


def _postgres_url(url: str, database: str | None = None) -> str:
    """``url`` as asyncpg takes it (no ``+asyncpg``), optionally naming another database."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def postgres_server_url() -> str:
    """The test PostgreSQL server's URL; without one the test skips (fails under CI=true)."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        skip_or_fail(f"{POSTGRES_ENV} is not set: no PostgreSQL to test against")
        raise AssertionError("unreachable")
    return url


async def _admin(server: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_postgres_url(server, "postgres"), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """Create ``chatlog_test_<random>``, yield its ``postgresql://`` URL, always drop it.

    An unreachable server skips the test, and fails it under CI=true.
    """
    import asyncpg

    server = postgres_server_url()
    name = f"chatlog_test_{secrets.token_hex(6)}"
    try:
        in_thread(_admin(server, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        where = make_url(server).render_as_string(hide_password=True)
        skip_or_fail(f"no PostgreSQL at {where}: {exc!r}")
    try:
        yield _postgres_url(server, name)
    finally:
        in_thread(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _numbered(sql: str) -> str:
    """sqlite3's ``?`` placeholders as asyncpg's ``$1, $2, ...`` (quoted text left alone)."""
    out, n, quote = [], 0, ""
    for char in sql:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "?":
            n += 1
            char = f"${n}"
        out.append(char)
    return "".join(out)


async def _pg_rows(url: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(_postgres_url(url), timeout=10)
    try:
        return [tuple(record) for record in await conn.fetch(_numbered(sql), *params)]
    finally:
        await conn.close()


def rows(db: str | Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement (``?`` placeholders) on a SQLite file or a PostgreSQL URL, commit, and
    return its rows as tuples.

    It blocks: a test whose server shares its loop wraps a write that could wait for the
    server's locks (a PostgreSQL ``DELETE``) in ``asyncio.to_thread``.
    """
    if is_postgres(db):
        return in_thread(_pg_rows(str(db), sql, params))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        found = conn.execute(sql, params).fetchall()
        conn.commit()
        return found


def scalar(db: str | Path, sql: str, *params: Any) -> Any:
    """The first column of the first row of :func:`rows`."""
    return rows(db, sql, *params)[0][0]


@dataclass(frozen=True)
class Backend:
    """A fresh, empty log: ``db`` is what ``--db`` takes (a file path or a PostgreSQL URL)."""

    kind: str
    db: str

    @property
    def path(self) -> Path:
        """The SQLite file (only the SQLite backend has one)."""
        assert self.kind == "sqlite", "only the SQLite backend has a file"
        return Path(self.db)

    def settings(self, **changes: Any) -> Settings:
        # No rate limit: tests send bursts no person types; tests of the limit set their own.
        # Quick PostgreSQL presence heartbeats, so a swept node registers again within a second.
        base = Settings(db=self.db, heartbeat=0, rate=0, node_heartbeat=0.3, node_timeout=5.0)
        return base.replace(**changes)


@contextlib.contextmanager
def open_backend(kind: str, directory: Path) -> Iterator[Backend]:
    """A new log of ``kind``: ``directory/chat.db`` for SQLite, a new database for PostgreSQL."""
    if kind == "sqlite":
        yield Backend("sqlite", str(directory / "chat.db"))
    elif kind == "postgres":
        with postgres_database() as url:
            # The form the README gives for --db (the plain postgresql:// form reaches the
            # servers through `chatlog bench --postgres` in test_postgres.py).
            yield Backend("postgres", url.replace("postgresql://", "postgresql+asyncpg://", 1))
    else:
        raise ValueError(f"no backend {kind!r}; use one of {BACKENDS}")


# --- a log the server wrote -------------------------------------------------------------------


#: Chat texts the server accepts that a transcript must still show safely.
TRICKY = [
    "plain hello",
    "tab\there",
    "two\nlines\r\n",
    "bidi \u202e gnirts",
    "emoji 😀 and ünïcödé",
    'quote " and back\\slash',
    "zero\u200bwidth and nbsp\u00a0here",
    "line\u2028separator",
]


@dataclass
class ServedLog:
    """A log written by the real server, and the Chat frames its sockets received."""

    backend: Backend
    #: message ID -> the exact text of the Chat frame a socket in the room received.
    wire: dict[int, str] = field(default_factory=dict)

    @property
    def db(self) -> str:
        return self.backend.db

    @property
    def path(self) -> Path:
        """The SQLite file (for tests of file-level things)."""
        return self.backend.path


async def serve_and_chat(settings: Settings, log: ServedLog, rounds: int = 8) -> ServedLog:
    """Start the real server on ``settings``, chat in three rooms over real sockets, stop it."""
    server = await start_server(settings)
    try:
        async with aiohttp.ClientSession() as session:
            rooms = {"lobby": ["alice", "bob"], "dev": ["carol", "dän"], "a b": ["eve"]}
            observers = {}
            senders = []
            for room, names in rooms.items():
                observers[room] = await session.ws_connect(ws_url(server, room=room))
                for name in names:
                    ws = await session.ws_connect(ws_url(server, room=room))
                    await ws.send_str(json.dumps({"User": name}))
                    senders.append(ws)
            sent = 0
            for round_ in range(rounds):
                for i, ws in enumerate(senders):
                    text = TRICKY[(round_ + i) % len(TRICKY)]
                    extra: dict[str, Any] = {"Round": round_} if i % 2 else {}
                    if i == 1:
                        extra["Nonce"] = f"n{round_}"
                    await ws.send_str(json.dumps({"Message": b64(text), "Author": "x", **extra}))
                    sent += 1
                if round_ == 1:  # a retry with a used nonce is stored once
                    await senders[1].send_str(
                        json.dumps({"Message": b64("retry"), "Nonce": "n0", "Round": 0})
                    )
                    latin1 = base64.b64encode(b"caf\xe9").decode()  # the original page's btoa
                    await ws.send_str(json.dumps({"Message": latin1}))
                    sent += 1
                await asyncio.sleep(0.03)  # spread sent_at so time windows have edges
            async with asyncio.timeout(10):
                while len(log.wire) < sent:
                    for ws in observers.values():
                        try:
                            msg = await ws.receive(timeout=0.05)
                        except TimeoutError:
                            continue
                        if msg.type is aiohttp.WSMsgType.TEXT and '"Type":"Chat"' in msg.data:
                            log.wire[json.loads(msg.data)["ID"]] = msg.data
            for ws in [*senders, *observers.values()]:
                await ws.close()
    finally:
        await server.close()
    return log


class ServedLogs:
    """One served log per backend, written on first use and kept until :meth:`close`."""

    def __init__(self, directory: Path, rounds: int) -> None:
        self.directory = directory
        self.rounds = rounds
        self.logs: dict[str, ServedLog] = {}
        self._stack = contextlib.ExitStack()

    def get(self, kind: str) -> ServedLog:
        if kind not in self.logs:
            where = self.directory / kind
            where.mkdir(exist_ok=True)
            backend = self._stack.enter_context(open_backend(kind, where))
            log = ServedLog(backend)
            self.logs[kind] = in_thread(serve_and_chat(backend.settings(), log, self.rounds))
        return self.logs[kind]

    def close(self) -> None:
        self._stack.close()
