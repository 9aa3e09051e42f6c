"""Full-text search in the log layer, on SQLite and PostgreSQL: matching, rooms, paging, and an
index kept exact by the writer, retention, import and the migration."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Sequence

import orjson
import pytest
from sqlalchemy import DateTime, bindparam, text

from chatlog.history import transfer
from chatlog.log import migrate, retention
from chatlog.log.backend import LogBackend
from chatlog.log.model import NewMessage, utcnow
from chatlog.log.open import opened
from chatlog.log.search import SearchRequest
from chatlog.log.search_query import parse
from chatlog.log.writer import Writer
from chatlog.settings import database_url
from tests.backends import Backend, ServedLog, rows
from tests.helpers import run_cli

#: (room, text) of the log every matching test searches; IDs are 1.. in this order.
TEXTS = [
    ("main", "Café au lait, s'il vous plaît"),  # 1
    ("main", "my RÉSUMÉ is attached"),  # 2
    ("main", "Привет, как дела? Ελληνικά γράμματα"),  # 3
    ("main", "我们明天去东京都看看"),  # 4
    ("main", "今日は東京タワーに行きました"),  # 5
    ("main", "서울에서 만나요"),  # 6
    ("main", "the release notes are out, deploy on friday"),  # 7
    ("main", "notes about the release, deploy later"),  # 8
    ("main", "cats are great"),  # 9
    ("main", "dogs are great too, draft"),  # 10
    ("other", "Café secret in another room"),  # 11
    ("main", "deployment of the draft release"),  # 12
    ("main", "<script>alert(1)</script> NEAR AND OR \"quoted\" 'single'"),  # 13
]

#: query -> IDs it finds in room ``main``, newest first.
EXPECTED = {
    "cafe": [1],
    "CAFÉ": [1],
    "plait": [1],
    "resume": [2],
    "résumé attached": [2],
    "привет": [3],
    "ДЕЛА": [3],
    "ελληνικα": [3],
    "東京": [5],
    "东京都": [4],
    "明天": [4],
    "タワー": [5],
    "서울": [6],
    "release": [12, 8, 7],
    '"release notes"': [7],
    "release notes": [8, 7],
    "release -draft": [8, 7],
    "deploy": [8, 7],
    "depl*": [12, 8, 7],
    "cats OR dogs": [10, 9],
    "cats OR dogs -draft": [9],
    "great cats OR dogs": [10, 9],
    "script alert": [13],
    "near": [13],
    '"quoted"': [13],
    "nothinglikethis": [],
}


async def _write(log: LogBackend, texts: Sequence[tuple[str, str]]) -> None:
    """Append through the real single writer, as the server does."""
    writer = Writer(log, lambda _stored: None, lambda _b, exc: None)
    await writer.start()
    for room, body in texts:
        raw = orjson.dumps({"Message": "eA=="}).decode()
        await writer.append(NewMessage(room, "ws", "alice", "eA==", body, raw, {"Message": "eA=="}))
    await writer.close()


async def _ids(log: LogBackend, query: str, **where: object) -> list[int]:
    async with log.engine.connect() as conn:
        found = await log.search_index.find(conn, SearchRequest(parse(query), **where))  # type: ignore[arg-type]
    return [row.id for row in found]


@pytest.fixture
async def log(backend: Backend) -> AsyncIterator[LogBackend]:
    async with opened(database_url(backend.db)) as opened_log:
        await _write(opened_log, TEXTS)
        yield opened_log


async def test_matching_rules(log: LogBackend) -> None:
    """Case, accents, any script, CJK words inside sentences, phrases, -word, OR and prefix
    match the same on both backends."""
    found = {query: await _ids(log, query, rooms=("main",)) for query in EXPECTED}
    assert found == EXPECTED


async def test_room_isolation_and_filters(log: LogBackend) -> None:
    """A search in one room never returns another room's message; author and paging apply."""
    assert await _ids(log, "cafe", rooms=("other",)) == [11]
    assert await _ids(log, "cafe") == [11, 1]
    assert await _ids(log, "cafe", rooms=("main",), authors=("bob",)) == []
    assert await _ids(log, "release", rooms=("main",), limit=2) == [12, 8]
    assert await _ids(log, "release", rooms=("main",), before=8, limit=2) == [7]
    ranked = await _ids(log, "release", rooms=("main",), order="rank")
    assert sorted(ranked) == [7, 8, 12]


async def test_purge_keeps_the_index_exact(log: LogBackend, backend: Backend) -> None:
    """A purged message is never found again, and its index entry is gone."""
    report = await retention.purge(log, retention.Policy(messages=3), room="main")
    assert report.messages == 9
    assert await _ids(log, "cafe") == [11]
    assert await _ids(log, "release") == [12]
    assert await _ids(log, "great") == [10]
    count = "SELECT count(*) FROM messages_fts"
    assert rows(backend.db, count) == [(4,)]


def _export_line(msg_id: int, body: str) -> bytes:
    """An export line the server could have stored: ``message`` and ``raw`` agree with ``text``."""
    message = base64.b64encode(body.encode()).decode()
    row = {
        "id": msg_id,
        "room": "main",
        "ws_id": "ws",
        "author": "alice",
        "message": message,
        "text": body,
        "raw": orjson.dumps({"Message": message}).decode(),
        "sent_at": "2026-12-01 10:00:00.000000",
        "nonce": None,
    }
    return orjson.dumps(row) + b"\n"


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


async def test_import_indexes_every_row(backend: Backend) -> None:
    """``chatlog import``'s loader puts every imported message into the index."""
    source = io.BytesIO(b"".join(_export_line(i, f"imported word{i} café") for i in (5, 9, 40)))
    await transfer.import_log(database_url(backend.db), source, lambda _n: _NoProgress())
    async with opened(database_url(backend.db)) as imported:
        assert await _ids(imported, "cafe") == [40, 9, 5]
        assert await _ids(imported, "word9") == [9]
        await _write(imported, [("main", "a new cafe")])
        assert await _ids(imported, "cafe", limit=1) == [41]


async def test_writer_indexes_in_the_same_transaction(log: LogBackend) -> None:
    """Every stored message has exactly one index entry, and a hand-made delete removes it."""
    async with log.transaction() as conn:
        indexed = (await conn.execute(text("SELECT count(*) FROM messages_fts"))).scalar()
        assert indexed == len(TEXTS)
        await conn.execute(text("DELETE FROM messages WHERE id = 9"))
    assert await _ids(log, "cats") == []
    async with log.transaction() as conn:
        await log.search_index.unindex(conn, [10])
    assert await _ids(log, "dogs") == []
    async with log.transaction() as conn:
        await log.search_index.index_rows(conn, [(10, "dogs again")])
    assert await _ids(log, "again") == [10]


async def test_concurrent_searches_while_writing(log: LogBackend) -> None:
    """Searches run beside the writer and see each committed message."""
    writes = _write(log, [("main", f"busy word{i}") for i in range(50)])
    await asyncio.gather(writes, *(_ids(log, "busy") for _ in range(5)))
    assert len(await _ids(log, "busy", limit=100)) == 50


async def test_migration_indexes_a_filled_log_and_downgrades(backend: Backend) -> None:
    """0003 on a log made at 0002 indexes every message; down to 0002 removes the index."""
    async with opened(database_url(backend.db), migrate=False) as log:
        await log.migrate("0002")
        async with log.transaction() as conn:  # the writer of 0002's time: no index yet
            await conn.execute(
                text(
                    "INSERT INTO messages (room, ws_id, author, message, text, raw, sent_at) "
                    "VALUES ('main', 'ws', 'a', 'eA==', :text, '{}', :at)"
                ).bindparams(bindparam("at", type_=DateTime())),
                [{"text": f"old message {i} Ünïcode", "at": utcnow()} for i in range(12000)],
            )
        await log.migrate("0003")
        assert rows(backend.db, "SELECT count(*) FROM messages_fts") == [(12000,)]
        await log.migrate()  # the search reads the newest schema's columns
        assert len(await _ids(log, "unicode", limit=1000)) == 1000
        assert await _ids(log, "11999") == [12000]
        await log.downgrade("0002")
        assert await log.revision() == "0002"
        tables = rows(
            backend.db,
            "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'messages_fts%'"
            if backend.kind == "postgres"
            else "SELECT count(*) FROM sqlite_master WHERE name LIKE 'messages_fts%'",
        )
        assert tables == [(0,)]
        await log.migrate()
        await _write(log, [("main", "written after the index came back")])
        assert await _ids(log, "unicode", limit=1) == [12000]
        assert await _ids(log, "came") == [12001]
        assert await log.revision() == migrate.head()


@pytest.mark.backends("sqlite")
def test_sql_can_match_the_index_but_not_write_it(served: ServedLog) -> None:
    """`chatlog sql` runs FTS5 MATCH queries; writes into the index are refused read-only."""
    match = (
        "SELECT m.id, m.text FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
        "WHERE messages_fts MATCH 'plain' ORDER BY m.id"
    )
    result = run_cli("sql", "--db", served.db, "--format", "jsonl", match)
    assert result.exit_code == 0, result.stderr
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert found and all("plain" in row["text"] for row in found)
    before = served.path.read_bytes()
    for statement in (
        "INSERT INTO messages_fts (messages_fts) VALUES ('optimize')",
        "INSERT INTO messages_fts (rowid, words) VALUES (999999, 'forged')",
        "DELETE FROM messages_fts",
        "UPDATE messages_fts SET words = 'x'",
    ):
        refused = run_cli("sql", "--db", served.db, statement)
        assert refused.exit_code == 1
        assert refused.stderr.startswith("Error: the log is opened read-only"), refused.stderr
    assert served.path.read_bytes() == before


@pytest.mark.backends("postgres")
async def test_postgres_finds_the_same_when_the_newest_ids_hold_too_few(
    log: LogBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's second step (older matches from the GIN index alone) gives the same
    results, order and paging as one step."""
    from chatlog.log.postgres import search as pg_search

    monkeypatch.setattr(pg_search, "RECENT", 2)
    found = {query: await _ids(log, query, rooms=("main",)) for query in EXPECTED}
    assert found == EXPECTED
    assert await _ids(log, "release", rooms=("main",), before=12, limit=1) == [8]
    assert await _ids(log, "cafe", limit=5) == [11, 1]
