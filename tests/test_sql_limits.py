"""`chatlog sql` has limits: a default --timeout, a memory cap, functions that leak or reach
outside refused, and the read-only table-valued pragma functions allowed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from chatlog.log.sqlite.readonly import HEAP_LIMIT
from tests.helpers import run_cli


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "chat.db")
    assert run_cli("db", "upgrade", "--db", path).exit_code == 0
    return path


@pytest.mark.parametrize(
    "query, why",
    [
        ("SELECT fts3_tokenizer('simple')", "the function fts3_tokenizer() is refused"),
        ("SELECT load_extension('/tmp/x')", "the function load_extension() is refused"),
        ("SELECT length(randomblob(500000000))", "needed more memory than chatlog sql allows"),
        ("SELECT length(zeroblob(100000000))", "needed more memory than chatlog sql allows"),
    ],
)
def test_a_refused_or_oversized_query_is_one_line(db: str, query: str, why: str) -> None:
    """Leaking functions and giant values are refused with one line and exit 1."""
    result = run_cli("sql", query, "--db", db)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: the query was ") and why in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_table_valued_pragma_functions_are_allowed(db: str) -> None:
    """pragma_table_info() and friends read the schema like their PRAGMA forms."""
    result = run_cli("sql", "SELECT name FROM pragma_table_info('messages') LIMIT 2", "--db", db)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"name": "id"}, {"name": "room"}]
    listed = run_cli("sql", "SELECT count(*) AS n FROM pragma_index_list('messages')", "--db", db)
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["n"] >= 2


def test_a_runaway_query_stops_at_the_timeout_and_0_means_none(db: str) -> None:
    """An endless recursive CTE stops at --timeout; --timeout 0 lets a query run unlimited."""
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    result = run_cli("sql", endless, "--db", db, "--timeout", "0.5")
    assert result.exit_code == 1 and "ran longer than the --timeout of 0.5s" in result.stderr
    assert run_cli("sql", "SELECT 1 AS one", "--db", db, "--timeout", "0").exit_code == 0
    shown = run_cli("sql", "--help")
    assert "default: 60.0" in " ".join(shown.stdout.split())


def test_a_read_caps_the_sqlite_heap(db: str) -> None:
    """After a read, SQLite's process-wide hard heap limit is at most 256 MiB."""
    assert run_cli("sql", "SELECT 1 AS one", "--db", db).exit_code == 0
    with sqlite3.connect(":memory:") as conn:
        (limit,) = conn.execute("PRAGMA hard_heap_limit").fetchone()
    assert 0 < limit <= HEAP_LIMIT
