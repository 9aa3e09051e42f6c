"""The history commands on a real PostgreSQL: read-only transactions, timeout, round trip."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.history_support import COLUMNS, in_thread, run_cli

pytestmark = pytest.mark.postgres
SERVER = "postgresql://postgres@127.0.0.1:5432"


async def _admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{SERVER}/test", timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database of its own on the local server, dropped afterwards."""
    name = f"chatlog_history_{uuid.uuid4().hex[:12]}"
    try:
        in_thread(_admin(f"CREATE DATABASE {name}"))
    except (OSError, ImportError) as exc:
        skip_or_fail(f"no PostgreSQL at {SERVER}: {exc}")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        in_thread(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_round_trip_replay_and_read_only_sql_on_postgres(pg_url: str, tmp_path: Path) -> None:
    """On PostgreSQL: round trip, replay, read-only sql, --timeout and the id sequence all hold."""
    lines = []
    for i in (3, 5, 8):
        raw = json.dumps({"Message": "aGk=", "Author": f"u{i}", "Extra": [i, "é"]})
        values = (i, "lobby", f"w{i}", f"u{i}", "aGk=", "hi\tthere", raw, None, None)
        row = dict(zip(COLUMNS, values, strict=True))
        row["sent_at"] = f"2026-11-25 12:00:0{i}.00012{i}"
        lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    dump = "".join(lines).encode()
    (tmp_path / "in.jsonl").write_bytes(dump)
    result = run_cli("import", str(tmp_path / "in.jsonl"), "--db", pg_url)
    assert result.exit_code == 0, result.stderr
    assert run_cli("export", "--db", pg_url).stdout_bytes == dump
    text = run_cli("replay", "4..", "--db", pg_url).stdout
    assert text == (
        "5 2026-11-25 12:00:05 [lobby] <u5> hi\\tthere\n"
        "8 2026-11-25 12:00:08 [lobby] <u8> hi\\tthere\n"
    )
    wire = run_cli("replay", "8", "--db", pg_url, "--format", "wire").stdout
    assert json.loads(wire) == {
        "Message": "aGk=", "Author": "u8", "Extra": [8, "é"], "Type": "Chat",
        "Sent": "2026-11-25 12:00:08", "ID": 8, "Room": "lobby",
    }  # fmt: skip
    counted = run_cli(
        "sql", "--db", pg_url, "-p", "a", "4", "SELECT count(*) AS n FROM messages WHERE id > :a"
    )
    assert json.loads(counted.stdout) == [{"n": 2}]
    write = run_cli("sql", "--db", pg_url, "DELETE FROM messages")
    assert write.exit_code == 1 and "read-only" in write.stderr
    assert json.loads(
        run_cli("sql", "--db", pg_url, "SELECT count(*) AS n FROM messages").stdout
    ) == [{"n": 3}]
    slow = run_cli("sql", "--db", pg_url, "--timeout", "0.3", "SELECT pg_sleep(30)")
    assert slow.exit_code == 1 and "ran longer than the --timeout of 0.3s" in slow.stderr
    seq = "SELECT pg_sequence_last_value(pg_get_serial_sequence('messages', 'id')) AS seq"
    assert json.loads(run_cli("sql", "--db", pg_url, seq).stdout) == [{"seq": 8}]
    again = run_cli("import", str(tmp_path / "in.jsonl"), "--db", pg_url)
    assert again.exit_code == 1 and "already holds 3 messages" in again.stderr
