"""Every input is checked at its border: bad handshake query values get 400 with the reason
(never a 500), and `chatlog import` refuses a row the server would not have stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from chatlog.history.row_rules import MAX_IMPORT_ID, max_line_bytes
from chatlog.log.basics import COLUMNS
from tests.backends import rows
from tests.helpers import run_cli
from tests.wsclients import ChatClient, ws_url


@pytest.mark.parametrize(
    "query, why",
    [
        ({"since": "²"}, "since must be a message ID of ASCII digits"),
        ({"since": "５"}, "since must be a message ID of ASCII digits"),
        ({"since": "9" * 5000}, "since must be a message ID of ASCII digits"),
        ({"since": str(2**63)}, "since must be a message ID of ASCII digits"),
        ({"since": "-1"}, "since must be a message ID of ASCII digits"),
        ({"since": " 1"}, "since must be a message ID of ASCII digits"),
        ({"epoch": "e" * 65}, "epoch must be 1 to 64 ASCII letters and digits"),
        ({"epoch": "ab-cd"}, "epoch must be 1 to 64 ASCII letters and digits"),
        ({"room": "a\x00b"}, "room must be 1 to 64 printable characters"),
        ({"room": "r" * 65}, "room must be 1 to 64 printable characters"),
    ],
)
async def test_a_bad_handshake_value_gets_400_with_the_reason(
    server: TestServer, session: aiohttp.ClientSession, query: dict[str, str], why: str
) -> None:
    """A bad since, epoch or room is refused with 400 and a one-line reason, never a 500."""
    async with session.get(
        ws_url(server, **query).replace("ws://", "http://"),
        headers={"Upgrade": "websocket", "Connection": "Upgrade"},
    ) as response:
        assert response.status == 400
        assert (await response.text()).strip().startswith(why)


async def test_the_largest_since_is_accepted(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    """since=2^63-1 is a valid (if far) ID: the resume is empty and complete."""
    client = await ChatClient.connect(session, ws_url(server, since=str(2**63 - 1)))
    resumed = await client.recv("Resumed")
    assert resumed["Complete"] is True
    await client.close()


def _row(i: int, **changes: Any) -> dict[str, Any]:
    raw = json.dumps({"Message": "aGk=", "Author": "p"})
    values = (i, "r", "w", "p", "aGk=", "hi", raw, f"2026-11-25 12:00:{i % 60:02d}.000000", None)
    row = dict.fromkeys(COLUMNS) | {"kind": "chat"} | dict(zip(COLUMNS, values, strict=False))
    return row | changes


def _raw(message: str) -> str:
    return json.dumps({"Message": message})


@pytest.mark.parametrize(
    "changes, why",
    [
        ({"id": 2**63 - 1}, f"is above {MAX_IMPORT_ID}, the highest ID an import may carry"),
        ({"room": "a\x01b"}, "room 'a\\x01b' holds control characters"),
        ({"author": "bob\x1b[31m"}, "author 'bob\\x1b[31m' holds control characters"),
        ({"author": " bob"}, "surrounding spaces"),
        ({"ws_id": "w\n"}, "ws_id 'w\\n' holds control characters"),
        ({"text": "something else"}, "text is not the decoded Message of raw"),
        ({"message": "b3RoZXI="}, "message is not the Message of raw"),
        ({"raw": _raw("not base64!"), "message": "not base64!"}, "invalid-base64"),
        ({"raw": _raw("aGk"), "message": "aGk"}, "invalid-base64"),
        ({"raw": _raw("AQ=="), "message": "AQ==", "text": "\x01"}, "invalid-text"),
        ({"raw": json.dumps({"User": "x"})}, "raw is not a chat frame (it has no Message)"),
        ({"raw": _raw("a" * 70_000)}, "raw is 70015 bytes, above --max-message-bytes 65536"),
    ],
)
def test_import_refuses_a_row_the_server_would_not_store(
    tmp_path: Path, changes: dict[str, Any], why: str
) -> None:
    """A bad row 3 is reported as line 3 with the reason, and nothing is created."""
    lines = [_row(1), _row(2), _row(3, **changes), _row(4)]
    source = tmp_path / "bad.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in lines))
    fresh = tmp_path / "fresh.db"
    result = run_cli("import", str(source), "--db", str(fresh))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: line 3: ") and why in result.stderr, result.stderr
    assert not fresh.exists()


def test_import_refuses_an_overlong_line_without_reading_it_whole(tmp_path: Path) -> None:
    """A line longer than the largest valid row is refused by number; nothing is written."""
    source = tmp_path / "long.jsonl"
    longest = max_line_bytes(65536)
    with source.open("w") as out:
        out.write(json.dumps(_row(1)) + "\n")
        out.write(json.dumps(_row(2, text="x" * longest)) + "\n")
    empty = tmp_path / "empty.db"
    assert run_cli("db", "upgrade", "--db", str(empty)).exit_code == 0
    result = run_cli("import", str(source), "--db", str(empty))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: line 2: longer than {longest} bytes"), result.stderr
    assert rows(empty, "SELECT count(*) FROM messages") == [(0,)]


def test_import_takes_the_largest_importable_id_and_rows_up_to_its_max_bytes(
    tmp_path: Path,
) -> None:
    """Rows up to MAX_IMPORT_ID import, a larger --max-message-bytes admits larger rows."""
    source = tmp_path / "ok.jsonl"
    big = _raw("YWFh" * 20_000)
    lines = [_row(1), _row(MAX_IMPORT_ID - 1, raw=big, message="YWFh" * 20_000, text="a" * 60_000)]
    source.write_text("".join(json.dumps(r) + "\n" for r in lines))
    db = tmp_path / "ok.db"
    refused = run_cli("import", str(source), "--db", str(db))
    assert refused.exit_code == 1 and "above --max-message-bytes" in refused.stderr
    result = run_cli("import", str(source), "--db", str(db), "--max-message-bytes", "100000")
    assert result.exit_code == 0, result.output
    assert rows(db, "SELECT max(id) FROM messages") == [(MAX_IMPORT_ID - 1,)]


@pytest.mark.parametrize("name", ["chat#1.db", "a?b.db", "c%20d.db", "100%.db", "é x.db"])
def test_every_command_opens_exactly_the_file_named(tmp_path: Path, name: str) -> None:
    """A path holding #, ? or % is that file for import, sql and export; nothing else appears."""
    source = tmp_path / "one.jsonl"
    source.write_text(json.dumps(_row(1)) + "\n")
    work = tmp_path / "work"
    work.mkdir()
    db = work / name
    missing = str(work / f"missing-{name}")
    assert run_cli("sql", "select 1", "--db", missing).exit_code == 1
    assert list(work.iterdir()) == [], "a read-only command created a file"
    assert run_cli("import", str(source), "--db", str(db)).exit_code == 0
    listed = run_cli("sql", "select id, text from messages", "--db", str(db))
    assert listed.exit_code == 0 and json.loads(listed.stdout) == [{"id": 1, "text": "hi"}]
    exported = run_cli("export", "--db", str(db))
    assert exported.exit_code == 0 and json.loads(exported.stdout)["id"] == 1
    assert rows(db, "SELECT count(*) FROM messages") == [(1,)]
    names = {p.name for p in work.iterdir()}
    assert names <= {name, f"{name}-wal", f"{name}-shm"}, names
