"""`chatlog sql`: read-only by construction, four output formats, bound parameters, a timeout,
on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest

from tests.backends import ServedLog, rows
from tests.helpers import run_cli

SERVED_ROUNDS = 2


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: Writes and DDL that every backend must refuse through `chatlog sql`.
WRITES = [
    "INSERT INTO errors (occurred_at, kind, detail) VALUES ('2026-01-01', 'k', 'd')",
    "UPDATE messages SET text = 'forged'",
    "DELETE FROM messages",
    "DROP TABLE messages",
    "CREATE TABLE extra (x integer)",
]


@pytest.mark.backends("sqlite")  # the file's bytes, ATTACH, PRAGMA and VACUUM INTO
@pytest.mark.parametrize(
    "statement",
    [
        *WRITES,
        "ALTER TABLE messages ADD COLUMN y",
        "ATTACH 'other.db' AS other",
        "PRAGMA query_only = OFF",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA user_version = 7",
        "VACUUM INTO 'copy.db'",
        "REPLACE INTO meta (id, epoch, created_at) VALUES (1, 'x', '2026-01-01')",
    ],
)
def test_a_write_fails_clearly_and_nothing_changes(
    served: ServedLog, statement: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes, DDL, ATTACH or pragma changes fail with one read-only line; the file is unchanged."""
    monkeypatch.chdir(tmp_path)
    before = digest(served.path)
    result = run_cli("sql", "--db", served.db, statement)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the log is opened read-only") or (
        "VACUUM" in statement and "Error: the query failed" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert digest(served.path) == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("statement", WRITES)
def test_a_write_is_refused_on_every_backend(served: ServedLog, statement: str) -> None:
    """On either backend a write or DDL fails with one read-only line and changes nothing."""
    before = rows(served.db, "SELECT id, text FROM messages ORDER BY id")
    result = run_cli("sql", "--db", served.db, statement)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "read-only" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert rows(served.db, "SELECT id, text FROM messages ORDER BY id") == before
    assert rows(served.db, "SELECT count(*) FROM errors WHERE kind = 'k'") == [(0,)]


def test_formats_and_bound_parameters(served: ServedLog) -> None:
    """json, jsonl, csv and table carry the same rows; --param binds :names (typed with :int)."""
    sql = "SELECT id, author, text FROM messages WHERE room = :room AND id > :after ORDER BY id"
    want = rows(served.db, sql.replace(":room", "?").replace(":after", "?"), "dev", 3)
    base = ["sql", "--db", served.db, "-p", "room", "dev", "--param", "after:int", "3", sql]
    as_json = json.loads(run_cli(*base).stdout)  # not a terminal: json is the default
    assert as_json == [{"id": i, "author": a, "text": t} for i, a, t in want]
    lines = run_cli(*base, "--format", "jsonl").stdout.split("\n")[:-1]
    assert [json.loads(line) for line in lines] == as_json
    out = run_cli(*base, "--format", "csv").stdout_bytes.decode()  # .stdout eats \r
    table_rows = list(csv.reader(io.StringIO(out, newline="")))
    assert table_rows == [["id", "author", "text"], *[[str(i), a, t] for i, a, t in want]]
    table = run_cli(*base, "--format", "table").stdout.split("\n")
    assert table[0].split() == ["id", "author", "text"] and set(table[1]) == {"-", " "}
    assert len(table) == len(want) + 3 and all(line.isprintable() for line in table)


def test_per_author_counts_example_from_the_readme(served: ServedLog) -> None:
    """The README's messages-per-author query runs and agrees with the database's own answer."""
    sql = "SELECT author, count(*) AS messages FROM messages GROUP BY author ORDER BY 2 DESC, 1"
    result = run_cli("sql", "--db", served.db, "--format", "jsonl", sql)
    got = [tuple(json.loads(line).values()) for line in result.stdout.split("\n")[:-1]]
    assert got == rows(served.db, sql) and len(got) == 5


def test_timeout_interrupts_a_runaway_query(served: ServedLog) -> None:
    """--timeout stops an endless recursive query with a one-line message and exit 1."""
    endless = "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT max(i) FROM c"
    result = run_cli("sql", "--db", served.db, "--timeout", "0.3", endless)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: the query was stopped: it ran longer than the --timeout of 0.3s"
    )


def test_one_statement_only_and_syntax_errors_are_one_line(served: ServedLog) -> None:
    """Two statements, or bad SQL, are refused with one line and exit 1."""
    for statement in ("SELECT 1; SELECT 2", "SELEC 1"):
        result = run_cli("sql", "--db", served.db, statement)
        assert result.exit_code == 1 and result.stderr.startswith("Error: the query failed")
        assert len(result.stderr.strip().splitlines()) == 1
