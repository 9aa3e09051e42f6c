"""What a new user meets first: `serve`'s start line and busy port, `token issue`'s checks,
`--help`'s summaries, typed `-p` parameters, and output that reads the same on both backends."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

from chatlog.history.output import display_width
from chatlog.log import migrate
from tests.backends import ServedLog, rows
from tests.helpers import CliResult, ServerProcess, free_port, run_cli


def test_busy_port_is_one_line_and_touches_no_database(tmp_path: Path) -> None:
    """`serve` on a port in use says which and what to do, before creating the database."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        db = tmp_path / "never.db"
        result = run_cli("serve", "--db", str(db), "--port", str(port), process=True)
    assert result.exit_code == 1, result.stderr
    assert result.stderr.strip() == (
        f"Error: port {port} on 127.0.0.1 is in use; pick another with --port or CHATLOG_PORT"
    )
    assert not db.exists() and list(tmp_path.iterdir()) == []


def test_start_line_names_page_socket_database_revision_and_limits(tmp_path: Path) -> None:
    """`serve` prints one line: page URL, WebSocket URL, database, revision, limits; no banner."""
    db = tmp_path / "chat.db"
    port = free_port()
    with ServerProcess(db, port=port) as server:
        deadline = time.monotonic() + 10
        while "serving" not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [line for line in server.output().splitlines() if "serving" in line]
        assert "======== Running on" not in server.output()
    assert len(lines) == 1, server.output()
    line = lines[0]
    for words in (
        f"the page at http://127.0.0.1:{port}/",
        f"WebSocket ws://127.0.0.1:{port}/ws",
        f"on {db} (schema {migrate.head()})",
        "messages up to 64 KiB",
        "no rate limit per connection",  # ServerProcess runs with --rate 0
        "connections 10000 (256 per address)",
        "auth off",
    ):
        assert words in line, line


SECRET = "0123456789abcdef"


def test_token_issue_validates_as_serve_does() -> None:
    """`token issue` refuses what `serve` refuses: a short secret, a bare --ttl, a bad room."""
    for args, words in [
        (["--secret", "short"], "auth-secret must be at least 16 characters"),
        (["--secret", SECRET, "--ttl", "8"], "--ttl '8' has no unit; write 8s, 8m, 8h or 8d"),
        (["--secret", SECRET, "--room", "x" * 65], "--room: room must be 1 to 64 printable"),
        (["--secret", SECRET, "--room", " "], "--room: the room is empty"),
    ]:
        result = run_cli("token", "issue", "--user", "alice", *args)
        assert result.exit_code == 2, (args, result.output)
        assert words in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    served = run_cli("serve", "--auth-secret", "short", "--port", "0")
    assert served.exit_code == 2 and "auth-secret must be at least 16 characters" in served.stderr


def test_token_room_is_the_room_the_server_sees() -> None:
    """A room with spaces around it is stored trimmed, as the handshake trims ?room=."""
    from chatlog.server import auth

    token = run_cli("token", "issue", "--user", "alice", "--secret", SECRET, "--room", " lobby ")
    assert token.exit_code == 0, token.stderr
    assert auth.verify(SECRET, token.stdout.strip()).room == "lobby"


STORED_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}"


def sql(served: ServedLog, *args: str) -> CliResult:
    """`chatlog sql` on the served log; it must succeed."""
    result = run_cli("sql", "--db", served.db, *args)
    assert result.exit_code == 0, result.stderr
    return result


def test_params_are_text_unless_typed_on_every_backend(served: ServedLog) -> None:
    """`-p n 007` is the text '007' and `-p n:int 5` the integer 5, whatever the backend."""
    as_text = sql(
        served, "--format", "jsonl", "-p", "v", "007", "-p", "y", "2024", "SELECT :v AS v, :y AS y"
    )
    assert json.loads(as_text.stdout) == {"v": "007", "y": "2024"}
    typed = sql(
        served, "--format", "jsonl", "-p", "n:int", "5", "-p", "x:float", "0.5",
        "SELECT count(*) AS n, CAST(:x AS DOUBLE PRECISION) * 2 AS x FROM messages WHERE id <= :n",
    )  # fmt: skip
    assert json.loads(typed.stdout) == {"n": 5, "x": 1.0}


def test_date_and_datetime_params_compare_with_sent_at(served: ServedLog) -> None:
    """`-p day:date` and `-p t:datetime` select by sent_at alike on both backends."""
    first = rows(served.db, "SELECT sent_at FROM messages ORDER BY id LIMIT 1")[0][0]
    first = first if isinstance(first, str) else first.strftime("%Y-%m-%d %H:%M:%S.%f")
    total = rows(served.db, "SELECT count(*) FROM messages")[0][0]
    query = "SELECT count(*) AS n FROM messages WHERE sent_at >= :t AND sent_at >= :day"
    day, moment = first[:10], first.replace(" ", "T")
    got = sql(served, "--format", "jsonl", "-p", "day:date", day, "-p", "t:datetime", moment, query)
    assert json.loads(got.stdout) == {"n": total}
    later = sql(
        served, "--format", "jsonl", "-p", "day:date", day, "-p", "t:datetime", "now", query
    )
    assert json.loads(later.stdout) == {"n": 0}


def test_bad_param_is_a_usage_error() -> None:
    """A value that is not of its type, or an unknown type, is one line and exit 2."""
    for args, words in [
        (["-p", "n:int", "five"], "-p n:int 'five' is not an int; write it like -p n:int 42"),
        (["-p", "d:date", "yesterday"], "is not a date; write it like -p d:date 2026-12-02"),
        (["-p", "n:number", "5"], "unknown type 'number'"),
    ]:
        result = run_cli("sql", "--db", "nowhere.db", *args, "SELECT :n")
        assert result.exit_code == 2 and words in result.stderr, result.stderr


def test_times_print_the_same_in_every_format(served: ServedLog) -> None:
    """sent_at reads as SQLite stores it (space, microseconds) in every format, on both backends."""
    query = "SELECT sent_at FROM messages ORDER BY id LIMIT 1"
    for fmt in ("table", "csv", "json", "jsonl"):
        out = sql(served, "--format", fmt, query).stdout
        assert re.search(rf"(^|[\s\"]){STORED_TIME}([\s\"]|$)", out), (fmt, out)
        assert not re.search(r"\d\dT\d\d", out), (fmt, out)


def test_table_aligns_wide_characters_by_display_width(served: ServedLog) -> None:
    """`--format table` pads by display width: CJK and emoji take two columns, columns line up."""
    query = "SELECT :a AS name, 'x' AS mark UNION ALL SELECT :b, 'y' UNION ALL SELECT :c, 'z'"
    out = sql(
        served, "--format", "table", "-p", "a", "漢字", "-p", "b", "abcd", "-p", "c", "👋ok", query
    ).stdout
    lines = out.splitlines()
    assert len(lines) == 5, out
    starts = {
        display_width(line[: line.index(mark)]) for line, mark in zip(lines[2:], "xyz", strict=True)
    }
    assert starts == {display_width(lines[0][: lines[0].index("mark")])}, out


def test_csv_to_a_terminal_escapes_newlines_and_a_pipe_keeps_them(served: ServedLog) -> None:
    """CSV on a terminal spells a cell's newline and escape as \\n, \\x1b; piped it is exact."""
    args = (
        "sql",
        "--db",
        served.db,
        "--format",
        "csv",
        "-p",
        "t",
        "a\nb\x1b[31m",
        "SELECT :t AS t",
    )
    shown = run_cli(*args, terminal="stdout")
    assert shown.exit_code == 0 and shown.stdout == "t\na\\nb\\x1b[31m\n", repr(shown.stdout)
    piped = run_cli(*args)
    assert piped.stdout_bytes == b't\n"a\nb\x1b[31m"\n'


def test_help_lists_every_summary_whole() -> None:
    """`chatlog --help` and its groups' help show each command's first sentence, never cut."""
    for group in ([], ["db"], ["token"]):
        shown = run_cli(*group, "--help", env={"COLUMNS": "80"})
        listed = shown.stdout.split("Commands:")[1].splitlines()
        assert shown.exit_code == 0 and not any(line.endswith("...") for line in listed), listed
    words = " ".join(run_cli("--help").stdout.split())
    assert "Load a chat server with N clients and report throughput, latency, CPU and losses." in (
        words
    )


def test_an_empty_log_round_trips_through_export_and_import(tmp_path: Path) -> None:
    """Exporting an empty log gives an empty file, which imports as an empty, migrated log."""
    empty, copy, dump = tmp_path / "empty.db", tmp_path / "copy.db", tmp_path / "dump.jsonl"
    assert run_cli("db", "upgrade", "--db", str(empty)).exit_code == 0
    assert run_cli("export", "--db", str(empty), "-o", str(dump)).exit_code == 0
    assert dump.read_bytes() == b""
    loaded = run_cli("import", str(dump), "--db", str(copy))
    assert loaded.exit_code == 0 and "imported 0 messages" in loaded.stdout, loaded.stderr
    assert f"{migrate.head()} (head)" in run_cli("db", "current", "--db", str(copy)).stdout
