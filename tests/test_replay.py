"""`chatlog replay` and `chatlog export` against a log written by the real server over sockets,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatlog.history.output import terminal_safe
from chatlog.history.replay import SelectionError, parse_range, parse_time
from chatlog.log.basics import COLUMNS
from chatlog.log.open import opened
from chatlog.settings import database_url
from tests.backends import Backend, ServedLog, rows
from tests.helpers import run_cli
from tests.wsclients import Connect

#: ``sent_at`` as the text replay prints and compares (SQLite stores it as that text).
SENT = {"sqlite": "sent_at", "postgres": "to_char(sent_at, 'YYYY-MM-DD HH24:MI:SS.US')"}


def copy_of(served: ServedLog, backend: Backend) -> str:
    """The served log exported and imported into the test's own empty log, to change freely."""
    dump = run_cli("export", "--db", served.db)
    assert dump.exit_code == 0, dump.stderr
    loaded = run_cli("import", "-", "--db", backend.db, input=dump.stdout_bytes)
    assert loaded.exit_code == 0, loaded.stderr
    return backend.db


# --- the reference: the SQL for a selection, and each format written out by hand -----------


def reference_rows(log: ServedLog, opts: dict[str, Any]) -> list[tuple[Any, ...]]:
    sent = SENT[log.backend.kind]
    conds, args = [], []
    if opts["start"] is not None:
        conds.append("id >= ?")
        args.append(opts["start"])
    if opts["end"] is not None:
        conds.append("id <= ?")
        args.append(opts["end"])
    if opts["since"] is not None:
        conds.append(f"{sent} >= ?")
        args.append(opts["since"])
    if opts["until"] is not None:
        conds.append(f"{sent} < ?")
        args.append(opts["until"])
    for column in ("room", "author"):
        values = opts[column + "s"]
        if values:
            conds.append(f"{column} IN ({','.join('?' * len(values))})")
            args.extend(values)
    columns = ", ".join(f"{sent} AS sent_at" if c == "sent_at" else c for c in COLUMNS)
    sql = f"SELECT {columns} FROM messages WHERE {' AND '.join(conds) or '1 = 1'} ORDER BY id"
    sql += " DESC" if opts["reverse"] else ""
    sql += f" LIMIT {opts['limit']}" if opts["limit"] else ""
    return rows(log.db, sql, *args)


def escaped(text: str) -> str:
    return "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in text)


def expected_output(log: ServedLog, rows: list[tuple[Any, ...]], fmt: str) -> str:
    lines = []
    for row in rows:
        r = dict(zip(COLUMNS, row, strict=True))
        if fmt == "jsonl":
            lines.append(json.dumps(r, ensure_ascii=False, separators=(",", ":")))
        elif fmt == "wire":
            lines.append(log.wire[r["id"]])
        else:
            lines.append(
                f"{r['id']} {r['sent_at'][:19]} [{escaped(r['room'])}] "
                f"<{escaped(r['author'])}> {escaped(r['text'])}"
            )
    return "".join(line + "\n" for line in lines)


def cli_args(opts: dict[str, Any], db: str) -> list[str]:
    args = ["replay", "--db", db, "--format", opts["fmt"]]
    start, end = opts["start"], opts["end"]
    if start is not None or end is not None:
        if start == end:
            args.insert(1, str(start))
        else:
            args.insert(1, f"{'' if start is None else start}..{'' if end is None else end}")
    for name in ("since", "until"):
        if opts[name] is not None:
            args += [f"--{name}", opts[name].replace(" ", "T")]
    args += [f"--room={v}" for v in opts["rooms"]] + [f"--author={v}" for v in opts["authors"]]
    args += ["--limit", str(opts["limit"])] if opts["limit"] else []
    return args + (["--reverse"] if opts["reverse"] else [])


@st.composite
def selections(draw: st.DrawFn, log: ServedLog) -> dict[str, Any]:
    ids = sorted(log.wire)
    sent = SENT[log.backend.kind]
    times = [t for (t,) in rows(log.db, f"SELECT DISTINCT {sent} FROM messages ORDER BY 1")]
    bound = st.none() | st.integers(0, ids[-1] + 3)
    start, end = draw(bound), draw(bound)
    if start is not None and end is not None and start > end:
        start, end = end, start
    single = draw(st.booleans()) and start is not None
    when = st.none() | st.sampled_from(times)
    since, until = draw(when), draw(when)
    return {
        "start": start,
        "end": start if single else end,
        "since": since,
        "until": until,
        "rooms": draw(st.lists(st.sampled_from(["lobby", "dev", "a b", "none"]), max_size=2)),
        "authors": draw(st.lists(st.sampled_from(["alice", "dän", "eve", "bob"]), max_size=2)),
        "limit": draw(st.none() | st.integers(1, 40)),
        "reverse": draw(st.booleans()),
        "fmt": draw(st.sampled_from(["text", "jsonl", "wire"])),
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_replay_output_is_what_the_sql_for_the_range_returns(
    served: ServedLog, data: st.DataObject
) -> None:
    """Random selections, every format: exactly the rows of the SQL for them (wire: as sent)."""
    opts = data.draw(selections(served))
    result = run_cli(*cli_args(opts, served.db))
    assert result.exit_code == 0, result.stderr
    selected = reference_rows(served, opts)
    assert result.stdout_bytes.decode() == expected_output(served, selected, opts["fmt"])


# On PostgreSQL `chatlog sql` prints sent_at in its own ISO form, so the bytes differ there
# (tests/test_postgres.py compares the two with sent_at set aside).
@pytest.mark.backends("sqlite")
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_replay_jsonl_is_byte_for_byte_the_sql_answer(
    served: ServedLog, data: st.DataObject
) -> None:
    """`replay A..B --format jsonl` prints the very bytes `chatlog sql` prints for that range."""
    top = max(served.wire)
    start = data.draw(st.integers(1, top))
    end = data.draw(st.integers(start, top))
    replay = run_cli("replay", f"{start}..{end}", "--db", served.db, "--format", "jsonl")
    sql = run_cli(
        "sql",
        "SELECT * FROM messages WHERE id BETWEEN :a AND :b ORDER BY id",
        "--param",
        "a",
        str(start),
        "--param",
        "b",
        str(end),
        "--db",
        served.db,
        "--format",
        "jsonl",
    )
    assert replay.exit_code == sql.exit_code == 0, (replay.stderr, sql.stderr)
    assert replay.stdout_bytes == sql.stdout_bytes and replay.stdout_bytes


def test_the_served_log_has_what_the_tests_need(served: ServedLog) -> None:
    """The fixture log holds every tricky text, several rooms, a nonce and the Latin-1 body."""
    texts = {t for (t,) in rows(served.db, "SELECT text FROM messages")}
    assert {"tab\there", "bidi \u202e gnirts", "café"} <= texts
    assert len(served.wire) == rows(served.db, "SELECT count(*) FROM messages")[0][0] > 30
    assert rows(served.db, "SELECT count(*) FROM messages WHERE nonce = 'n0'") == [(1,)]


def test_text_transcript_cannot_drive_a_terminal(served: ServedLog) -> None:
    """Newlines, tabs, bidi overrides and line separators are escaped: one line per message."""
    result = run_cli("replay", "--db", served.db)
    lines = result.stdout_bytes.decode().split("\n")[:-1]
    assert len(lines) == len(served.wire)
    assert all(line.isprintable() for line in lines)
    assert any(line.endswith("<alice> tab\\there") for line in lines)
    assert any("bidi \\u202e gnirts" in line for line in lines)
    assert terminal_safe("\x1b]0;pwned\x07\x9b2J") == "\\x1b]0;pwned\\x07\\x9b2J"


def test_json_on_a_terminal_escapes_what_could_drive_it(served: ServedLog) -> None:
    """On a terminal JSON output spells bidi and separator characters as \\u escapes; piped, not."""
    for fmt in ("jsonl", "wire"):
        seen = run_cli("replay", "--db", served.db, "--format", fmt, terminal="stdout")
        code, text = seen.exit_code, seen.stdout_bytes.decode()
        assert code == 0 and "\u202e" not in text and "\u2028" not in text
        piped = run_cli("replay", "--db", served.db, "--format", fmt).stdout_bytes.decode()
        if fmt == "jsonl":  # (wire frames carry the text base64-encoded)
            assert "\\u202e" in text and "\\u2028" in text
            assert "\u202e" in piped and "\\u202e" not in piped
        assert [json.loads(line) for line in text.replace("\r\n", "\n").split("\n")[:-1]] == [
            json.loads(line) for line in piped.split("\n")[:-1]
        ]


def test_export_is_jsonl_replay_and_writes_the_file_whole(
    served: ServedLog, tmp_path: Path
) -> None:
    """export -o FILE holds exactly `replay --format jsonl`; a failed export leaves no file."""
    out = tmp_path / "all.jsonl"
    result = run_cli("export", "--db", served.db, "-o", str(out), "--room", "dev")
    assert result.exit_code == 0, result.stderr
    replayed = run_cli("replay", "--db", served.db, "--format", "jsonl", "--room", "dev")
    assert out.read_bytes() == replayed.stdout_bytes and out.read_bytes().count(b"\n") > 5
    assert [json.loads(line)["id"] for line in out.read_text().split("\n")[:-1]] == [
        i for (i,) in rows(served.db, "SELECT id FROM messages WHERE room = 'dev' ORDER BY id")
    ]
    missing = run_cli("export", "--db", str(tmp_path / "none.db"), "-o", str(tmp_path / "x"))
    assert missing.exit_code == 1 and not (tmp_path / "x").exists()


@pytest.mark.backends("sqlite")  # refused before the log is opened
@pytest.mark.parametrize(
    "args, message",
    [
        (["replay", "7..3"], "bad range '7..3'"),
        (["replay", "1-5"], "bad range '1-5'"),
        (["replay", ".."], "bad range '..'"),
        (["export", "x.."], "bad range 'x..'"),
        (["replay", "--since", "last tuesday"], "bad time 'last tuesday'"),
        (["export", "--until", "2026-13-01"], "bad time '2026-13-01'"),
        (["replay", "--follow", "--reverse"], "--follow cannot be combined"),
        (["replay", "5..9", "--follow"], "--follow needs an open range"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(served: ServedLog, args: list[str], message: str) -> None:
    """A bad range, time or flag combination: one Error line on stderr, exit 2, no output."""
    result = run_cli(*args, "--db", served.db)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["replay"], ["export"], ["sql", "SELECT 1"]])
def test_missing_database_is_an_error_and_is_not_created(
    tmp_path: Path, command: list[str]
) -> None:
    """A path with no database: one line naming it, exit 1, and no file appears."""
    db = tmp_path / "nothing.db"
    result = run_cli(*command, "--db", str(db))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: no database at {db}; start `chatlog serve --db {db}` first"
    )
    assert not db.exists()


def test_parsing_ranges_and_times() -> None:
    """Ranges are inclusive ID pairs; times are ISO-8601 (zones to UTC) or relative to now."""
    assert parse_range("100..200") == (100, 200)
    assert parse_range("100..") == (100, None)
    assert parse_range("..200") == (None, 200)
    assert parse_range("42") == (42, 42)
    now = datetime(2026, 11, 25, 12, 0)
    assert parse_time("-2h", now) == datetime(2026, 11, 25, 10, 0)
    assert parse_time("-30m", now) == datetime(2026, 11, 25, 11, 30)
    assert parse_time("-1d", now) == datetime(2026, 11, 24, 12, 0)
    assert parse_time("2026-11-25T14:00:00+02:00") == datetime(2026, 11, 25, 12, 0)
    assert parse_time("2026-11-25") == datetime(2026, 11, 25)
    for bad in ("1..2..3", "a", "-3", ""):
        with pytest.raises(SelectionError):
            parse_range(bad)


def test_note_on_stderr_when_retention_removed_the_start(
    served: ServedLog, backend: Backend
) -> None:
    """After a purge, replay says on stderr from which ID the log (or the room) really starts."""
    db = copy_of(served, backend)
    purge = run_cli("purge", "--db", db, "--retain-messages", "3", "--room", "lobby")
    assert purge.exit_code == 0, purge.stderr
    first_lobby = rows(db, "SELECT min(id) FROM messages WHERE room = 'lobby'")[0][0]
    result = run_cli("replay", "1..", "--room", "lobby", "--db", db)
    assert result.exit_code == 0
    assert f"the first available ID is {first_lobby}" in result.stderr
    assert result.stdout.count("\n") == 3
    whole = run_cli("replay", "--db", db, "--format", "jsonl")
    assert "retention removed older messages of 'lobby'" in whole.stderr
    untouched = run_cli("replay", "--room", "dev", "--db", db)
    assert untouched.stderr == ""


def test_note_when_the_log_starts_after_the_asked_id(served: ServedLog, backend: Backend) -> None:
    """A log whose first rows were deleted outright (no retention row) still gets the note."""
    db = copy_of(served, backend)
    rows(db, "DELETE FROM messages WHERE id < 10")
    result = run_cli("replay", "3..12", "--db", db)
    assert result.stderr.strip() == (
        "note: IDs before 10 are no longer in the log; the first available ID is 10"
    )
    assert [int(line.split()[0]) for line in result.stdout.splitlines()] == [10, 11, 12]


def _synthetic_export(path: Path, gaps: list[float]) -> None:
    when = datetime(2026, 11, 25, 12, 0)
    lines = []
    for i, gap in enumerate([0.0, *gaps], 1):
        when += timedelta(seconds=gap)
        raw = json.dumps({"Message": "aGk=", "Author": "p"})
        row = dict(
            zip(
                COLUMNS,
                (i, "r", "w", "p", "aGk=", "hi", raw, None, None, "chat", None, None, None),
                strict=True,
            )
        )
        row["sent_at"] = when.strftime("%Y-%m-%d %H:%M:%S.%f")
        lines.append(json.dumps(row, separators=(",", ":")) + "\n")
    path.write_text("".join(lines))


def test_pace_keeps_the_original_gaps(tmp_path: Path, backend: Backend) -> None:
    """--pace waits the original gaps (divided by FACTOR) and prints the same rows."""
    _synthetic_export(tmp_path / "p.jsonl", [0.2, 0.3, 0.1])
    db = backend.db
    assert run_cli("import", str(tmp_path / "p.jsonl"), "--db", db).exit_code == 0
    plain = run_cli("replay", "--db", db).stdout
    began = time.monotonic()
    paced = run_cli("replay", "--db", db, "--pace", "2")
    assert time.monotonic() - began >= 0.3  # (0.2 + 0.3 + 0.1) / 2: sleeps never end early
    assert paced.exit_code == 0 and paced.stdout == plain and plain.count("\n") == 4
    flag_only = run_cli("replay", "3..", "--db", db, "--pace")
    assert flag_only.exit_code == 0 and flag_only.stdout.count("\n") == 2


async def test_follow_prints_every_new_row_once_while_the_server_runs(
    connect: Connect, backend: Backend
) -> None:
    """--follow while messages stream: each ID once, in order, across the seam; Ctrl-C exits 0."""
    alice = await connect(room="live")
    other = await connect(room="other")
    await alice.alias("alice")
    for i in range(20):
        await alice.say(f"before {i}")
    await alice.chats(20)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatlog", "replay", "5..", "--follow", "--format", "jsonl",
        "--room", "live", "--db", backend.db,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip

    async def chatter() -> None:
        for burst in range(8):
            for i in range(15):
                await alice.say(f"live {burst}.{i}")
                await other.say("elsewhere")
            await asyncio.sleep(0.1 * (burst % 3))

    sender = asyncio.create_task(chatter())
    ids: list[int] = []
    try:
        async with asyncio.timeout(30):
            await sender
            await alice.chats(120)
            sql = "SELECT id FROM messages WHERE room = 'live' ORDER BY id"
            want = [i for (i,) in rows(backend.db, sql)]
            want = [i for i in want if i >= 5]
            assert proc.stdout is not None
            while len(ids) < len(want):
                ids.append(json.loads(await proc.stdout.readline())["id"])
        assert ids == want
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 20)
    assert proc.stderr is not None
    stderr = (await proc.stderr.read()).decode()
    assert (code, stderr) == (0, "")


#: A statement that runs for about a second on each backend, to be interrupted.
SLOW_QUERY = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
    "SELECT count(*) FROM c",
    "postgres": "SELECT pg_sleep(1)",
}


async def test_ctrl_c_mid_statement_ends_a_read_cleanly(backend: Backend) -> None:
    """Ctrl-C lands as a cancellation in whatever --follow is running, often a statement:
    the read ends with that cancellation (exit 0), not a driver error (exit 1), and the log
    reads fine afterwards."""
    url = database_url(backend.db)
    async with opened(url):
        pass  # the schema, so that the read-only log below has something to open
    async with opened(url, access="read") as log:
        running = asyncio.Event()

        async def slow_read() -> None:
            async with log.read_only() as reader:
                running.set()
                await reader.scalar(SLOW_QUERY[backend.kind])

        task = asyncio.create_task(slow_read())
        await running.wait()
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with log.read_only() as reader:
            assert await reader.scalar("SELECT count(*) FROM messages") == 0


async def test_replay_reads_while_the_server_writes(connect: Connect, backend: Backend) -> None:
    """The read-only CLI works beside a running server and does not hold up its writer."""
    bob = await connect(room="r")
    await bob.say("first")
    await bob.recv("Chat")
    result = await asyncio.to_thread(run_cli, "replay", "--db", backend.db, "--format", "wire")
    assert json.loads(result.stdout)["Message"] == "Zmlyc3Q="
    await bob.say("second")
    assert (await bob.recv_chat("second"))["ID"] == 2


@settings(max_examples=100, deadline=None)
@given(
    texts=st.lists(st.text(st.characters(blacklist_categories=["Cs"])), min_size=6, max_size=6),
    nonce=st.none() | st.text(min_size=1, max_size=64),
    micros=st.integers(0, 999_999),
)
def test_sqlite_json_lines_equal_the_orjson_ones(
    texts: list[str], nonce: str | None, micros: int
) -> None:
    """SQLite's json_object line and the orjson line (PostgreSQL path) are the same bytes."""
    from chatlog.history.replay import json_line
    from chatlog.log.sqlite.readonly import json_object_sql

    sent = f"2026-11-25 20:21:15.{micros:06d}"
    row = (7, *texts, sent, nonce, "chat", None, None, None)
    with sqlite3.connect(":memory:") as conn:
        conn.execute(f"CREATE TABLE messages ({', '.join(COLUMNS)})")
        conn.execute(f"INSERT INTO messages VALUES ({', '.join('?' * len(row))})", row)
        (built,) = conn.execute(f"SELECT {json_object_sql(COLUMNS)} FROM messages").fetchone()
    assert built == json_line(row)


async def test_follow_with_limit_stops_by_itself(connect: Connect, backend: Backend) -> None:
    """--follow --limit N prints N messages in all (range plus live ones), then exits 0."""
    carol = await connect(room="c")
    await carol.say("old")
    await carol.recv("Chat")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatlog", "replay", "--follow", "--limit", "3", "--pace",
        "--room", "c", "--db", backend.db, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert first.decode().endswith("[c] <unknown> old\n")
    # Let it reach its live phase: a row committed before that is lost on PostgreSQL (the
    # seam test below), which is not what this test is about.
    await asyncio.sleep(1.0)
    for text in ("new 1", "new 2", "new 3"):
        await carol.say(text)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert [line.split("> ")[1] for line in out.decode().splitlines()] == ["new 1", "new 2"]


async def test_follow_prints_what_commits_while_the_range_is_printed(
    connect: Connect, backend: Backend
) -> None:
    """A message committed while --follow still prints its range is printed after it, once."""
    dora = await connect(room="d")
    await dora.say("old 1")
    await dora.recv("Chat")
    await asyncio.sleep(0.4)
    await dora.say("old 2")
    await dora.recv("Chat")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatlog", "replay", "--follow", "--limit", "4", "--pace", "0.4",
        "--room", "d", "--db", backend.db, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert first.decode().endswith("<unknown> old 1\n")
        # --pace now waits about a second before "old 2": commit "new 1" inside that wait.
        await dora.say("new 1")
        await dora.recv_chat("new 1")
        second = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert second.decode().endswith("<unknown> old 2\n")
        for text in ("new 2", "new 3", "new 4"):
            await dora.say(text)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert [line.split("> ")[1] for line in out.decode().splitlines()] == ["new 1", "new 2"]
