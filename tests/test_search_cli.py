"""`chatlog search` on SQLite and PostgreSQL: replay JSON plus a snippet, formats, errors."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator

import pytest

from chatlog.log.open import opened
from chatlog.settings import database_url
from tests.backends import Backend
from tests.helpers import run_cli
from tests.test_search import TEXTS, _write


@pytest.fixture
async def db(backend: Backend) -> AsyncIterator[str]:
    async with opened(database_url(backend.db)) as log:
        await _write(log, TEXTS)
    yield backend.db


def test_results_are_replay_json_plus_a_snippet(db: str) -> None:
    """Each jsonl result is the message's replay line plus its snippet; newest first."""
    result = run_cli("search", "--db", db, "--format", "jsonl", "release")
    assert result.exit_code == 0, result.stderr
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["id"] for row in found] == [12, 8, 7]
    for row in found:
        line = run_cli("replay", str(row["id"]), "--db", db, "--format", "jsonl").stdout
        snippet = row.pop("snippet")
        assert row == json.loads(line)
        assert snippet[1::2] == ["release"] and "".join(snippet) == row["text"]


def test_filters_order_and_limit(db: str) -> None:
    """--room, --author, --limit and --order rank select as replay's flags do."""

    def ids(*args: str) -> list[int]:
        result = run_cli("search", "--db", db, "--format", "jsonl", *args)
        assert result.exit_code == 0, result.stderr
        return [json.loads(line)["id"] for line in result.stdout.splitlines()]

    assert ids("cafe") == [11, 1]
    assert ids("--room", "main", "cafe") == [1]
    assert ids("--author", "nobody", "cafe") == []
    assert ids("--limit", "1", "depl*") == [12]
    assert sorted(ids("--order", "rank", "depl*")) == [7, 8, 12]
    assert ids("--since", "-1h", "--until", "2999-01-01", "東京") == [5]


def test_formats(db: str) -> None:
    """table: id, time, room, author, marked snippet; csv: every column; json: an array."""
    table = run_cli("search", "--db", db, "--format", "table", "café").stdout.splitlines()
    assert table[0].split() == ["id", "sent_at", "room", "author", "snippet"]
    assert "[Café] secret in another room" in table[2]
    rows = list(
        csv.DictReader(
            io.StringIO(run_cli("search", "--db", db, "--format", "csv", "résumé").stdout)
        )
    )
    assert [r["snippet"] for r in rows] == ["my [RÉSUMÉ] is attached"]
    as_json = json.loads(
        run_cli("search", "--db", db, "--format", "json", "tour OR tower OR タワー").stdout
    )
    assert [r["id"] for r in as_json] == [5]


def test_nothing_found_and_bad_queries(db: str) -> None:
    """No match: exit 0 and no output; a bad query or flag: one Error line, exit 2."""
    nothing = run_cli("search", "--db", db, "nothinglikethis")
    assert (nothing.exit_code, nothing.stdout, nothing.stderr) == (0, "", "")
    for args, message in (
        (['"unclosed'], "Error: bad query: a quote is not closed"),
        (["--", "-only"], "Error: bad query: only excluded words; add a word to find"),
        (["--since", "yesterday", "x"], "Error:"),
        (["--limit", "0", "x"], "Error: Invalid value for '--limit'"),
    ):
        bad = run_cli("search", "--db", db, *args)
        assert bad.exit_code == 2, (args, bad.stderr)
        assert bad.stderr.startswith(message) and len(bad.stderr.splitlines()) == 1, bad.stderr
        assert bad.stdout == ""
