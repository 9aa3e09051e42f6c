"""`chatlog export` / `chatlog import`: a byte-identical round trip (SQLite and PostgreSQL),
all-or-nothing imports, and progress bars only on a terminal."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from chatlog.log.basics import COLUMNS
from chatlog.settings import Settings
from tests.backends import Backend, ServedLog, rows
from tests.helpers import in_thread, run_cli, start_server
from tests.wsclients import ChatClient, ws_url

SERVED_ROUNDS = 3

#: The highest ID the log has handed out (IDs are never reused).
LAST_ID = {
    "sqlite": "SELECT seq FROM sqlite_sequence WHERE name = 'messages'",
    "postgres": "SELECT pg_sequence_last_value(pg_get_serial_sequence('messages', 'id'))",
}


def export(db: str, *args: str) -> bytes:
    result = run_cli("export", "--db", db, *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout_bytes


async def _say_once(settings: Settings) -> int:
    server = await start_server(settings)
    try:
        async with aiohttp.ClientSession() as session:
            client = await ChatClient.connect(session, ws_url(server, room="dev"))
            await client.say("after the import")
            frame = await client.recv("Chat")
            await client.close()
            return int(frame["ID"])
    finally:
        await server.close()


def test_export_import_export_is_byte_identical(
    served: ServedLog, backend: Backend, tmp_path: Path
) -> None:
    """Export, import, export is byte-identical, and the server then continues above the last ID."""
    first = export(served.db)
    (tmp_path / "log.jsonl").write_bytes(first)
    target = backend.db
    result = run_cli("import", str(tmp_path / "log.jsonl"), "--db", target)
    assert result.exit_code == 0, result.stderr
    lines = first.count(b"\n")
    assert result.stdout.startswith(f"imported {lines} messages")
    assert export(target) == first
    newest = rows(served.db, "SELECT max(id) FROM messages")[0][0]
    assert rows(target, LAST_ID[backend.kind]) == [(newest,)]
    assert in_thread(_say_once(backend.settings())) == newest + 1


def test_import_from_stdin_of_a_range(served: ServedLog, backend: Backend) -> None:
    """A ranged export piped into `import -` keeps its IDs, and exports the same again."""
    part = export(served.db, "8..", "--room", "dev")
    target = backend.db
    result = run_cli("import", "-", "--db", target, input=part)
    assert result.exit_code == 0, result.stderr
    assert export(target) == part
    assert [i for (i,) in rows(target, "SELECT id FROM messages ORDER BY id")] == [
        json.loads(line)["id"] for line in part.split(b"\n")[:-1]
    ]


def _lines(served: ServedLog) -> list[dict[str, object]]:
    return [json.loads(line) for line in export(served.db, "..5").split(b"\n")[:-1]]


@pytest.mark.backends("sqlite")  # checks the file is never created
@pytest.mark.parametrize(
    "line, why",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ("{ID}", "not valid JSON"),
        ('{"id": 99}', "missing key 'room'"),
        ("EXTRA", "unknown key 'extra'"),
        ("DUPKEY", "same key twice"),
        ("ID=2", "is not above the previous line's id"),
        ("ID=-1", "id must be a positive integer"),
        ("SENT=yesterday", "sent_at 'yesterday' is not an ISO-8601 time"),
        ("RAW=nope", "raw is not the JSON of a chat frame"),
        ("ROOM=", "room must be a string of 1 to 64 characters"),
        ("NONCE=n0", "nonce 'n0' repeats line 2"),
        ("", "empty line"),
    ],
)
def test_a_bad_line_is_reported_by_number_and_nothing_is_written(
    served: ServedLog, tmp_path: Path, line: str, why: str
) -> None:
    """A bad line 4 is reported as line 4 with why, and nothing is created or written."""
    lines = _lines(served)[:4]
    for row in lines[:3]:
        row["nonce"] = None
    lines[1]["nonce"], lines[1]["room"] = "n0", "lobby"
    bad = dict(lines[3], nonce=None)
    if line == "EXTRA":
        line = json.dumps({**bad, "extra": 1})
    elif line == "DUPKEY":
        line = json.dumps(bad)[:-1] + ', "id": 1}'
    elif "=" in line:
        key, value = line.split("=", 1)
        column = {"ID": "id", "SENT": "sent_at", "RAW": "raw", "ROOM": "room", "NONCE": "nonce"}
        bad[column[key]] = int(value) if key == "ID" else value
        bad["room"] = "lobby" if key == "NONCE" else bad["room"]
        line = json.dumps(bad)
    text = "".join(json.dumps(r) + "\n" for r in lines[:3]) + line + "\n" + json.dumps(lines[3])
    (tmp_path / "bad.jsonl").write_text(text + "\n")
    fresh = tmp_path / "fresh.db"
    result = run_cli("import", str(tmp_path / "bad.jsonl"), "--db", str(fresh))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: line 4: ") and why in result.stderr, result.stderr
    assert not fresh.exists()
    empty = tmp_path / "empty.db"
    assert run_cli("db", "upgrade", "--db", str(empty)).exit_code == 0
    again = run_cli("import", str(tmp_path / "bad.jsonl"), "--db", str(empty))
    assert again.exit_code == 1 and rows(empty, "SELECT count(*) FROM messages") == [(0,)]


def test_import_refuses_a_log_that_holds_or_held_messages(
    served: ServedLog, backend: Backend, tmp_path: Path
) -> None:
    """A database with messages, or one whose IDs already went past the file's, is refused."""
    dump = tmp_path / "all.jsonl"
    dump.write_bytes(export(served.db))
    held = rows(served.db, "SELECT count(*) FROM messages")[0][0]
    full = run_cli("import", str(dump), "--db", served.db)
    assert full.exit_code == 1 and f"already holds {held} messages" in full.stderr
    emptied = backend.db
    assert run_cli("import", str(dump), "--db", emptied).exit_code == 0
    rows(emptied, "DELETE FROM messages")
    reused = run_cli("import", str(dump), "--db", emptied)
    assert reused.exit_code == 1 and "IDs are never reused" in reused.stderr
    missing = run_cli("import", str(tmp_path / "nope.jsonl"), "--db", emptied)
    assert missing.exit_code == 2 and "cannot read" in missing.stderr


def _synthetic(path: Path, count: int) -> None:
    raw = json.dumps({"Message": "aGk=", "Author": "p"})
    with path.open("w") as out:
        for i in range(1, count + 1):
            sent = f"2026-11-25 12:00:{i % 60:02d}.000000"
            values = (i, "r", "w", "p", "aGk=", "hi", raw, sent, None, "chat", None, None, None)
            row = dict(zip(COLUMNS, values, strict=True))
            out.write(json.dumps(row, separators=(",", ":")) + "\n")


def test_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    """Large imports and exports draw a tqdm bar when stderr is a terminal, never otherwise."""
    _synthetic(tmp_path / "big.jsonl", 12_000)
    db = str(tmp_path / "big.db")
    shown = run_cli("import", str(tmp_path / "big.jsonl"), "--db", db, terminal="stderr")
    code, err = shown.exit_code, shown.stderr_bytes
    assert code == 0 and b"import" in err and b"msg" in err and b"\r" in err
    out = str(tmp_path / "again.jsonl")
    shown = run_cli("export", "--db", db, "-o", out, terminal="stderr")
    code, err = shown.exit_code, shown.stderr_bytes
    assert code == 0 and b"export" in err and b"msg" in err
    assert Path(out).read_bytes() == (tmp_path / "big.jsonl").read_bytes()
    piped = run_cli("export", "--db", db, "-o", out)  # click's runner: stderr is no terminal
    assert piped.exit_code == 0 and piped.stderr == f"exported 12000 messages to {out}\n"
