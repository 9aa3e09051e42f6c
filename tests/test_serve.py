"""`chatlog serve` as a real process: start-up sweep, graceful shutdown, clear CLI errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.backends import rows, scalar
from tests.helpers import ServerProcess, run_cli
from tests.wsclients import ChatClient, b64


def count(db: Path, table: str) -> int:
    return int(scalar(db, f"select count(*) from {table}"))


async def test_restart_sweeps_rows_of_a_killed_server(tmp_path: Path) -> None:
    """Rows of connections from a SIGKILLed server are gone once it starts again."""
    db = tmp_path / "crash.db"
    server = ServerProcess(db).start()
    try:
        async with aiohttp.ClientSession() as session:
            clients = [await ChatClient.connect(session, server.url) for _ in range(3)]
            await clients[0].alias("ghost")
            assert count(db, "websocket_connections") == 3 and count(db, "users") == 1
            server.kill()
        assert count(db, "websocket_connections") == 3, "a crash leaves the rows behind"
        server.start()
        assert count(db, "websocket_connections") == 0 and count(db, "users") == 0
        async with aiohttp.ClientSession() as session:
            fresh = await ChatClient.connect(session, server.url)
            assert fresh.users == []
    finally:
        server.kill()


async def test_sigterm_closes_with_1001_and_keeps_every_received_message(tmp_path: Path) -> None:
    """SIGTERM closes sockets with 1001, exits 0, and what was stored is a gap-free prefix."""
    db = tmp_path / "term.db"
    server = ServerProcess(db).start()
    async with aiohttp.ClientSession() as session:
        client = await ChatClient.connect(session, server.url)
        for i in range(300):
            await client.say(f"m{i}")
        await client.recv("Chat")
        shown: list[str] = []

        async def read_until_closed() -> None:
            async for msg in client.ws:
                if msg.type is aiohttp.WSMsgType.TEXT and '"Chat"' in msg.data:
                    shown.append(msg.json()["Message"])

        reader = asyncio.create_task(read_until_closed())
        assert await asyncio.to_thread(server.terminate) == 0
        await asyncio.wait_for(reader, 10)
        assert client.ws.close_code == 1001
    stored = [m for (m,) in rows(db, "select message from messages order by id")]
    assert stored == [b64(f"m{i}") for i in range(len(stored))]
    assert len(stored) >= len(shown) + 1
    assert count(db, "websocket_connections") == 0


def test_bad_db_path_is_a_one_line_error(tmp_path: Path) -> None:
    """`serve --db` in a missing directory exits non-zero with one line saying what to do."""
    result = run_cli("serve", "--db", str(tmp_path / "nope" / "chat.db"), process=True)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0], result.stderr
    assert not (tmp_path / "nope").exists()


def test_bad_flags_are_clear_errors(tmp_path: Path) -> None:
    """A bad port, URL scheme or durability level is refused before anything starts."""
    for args, words in [
        (["--port", "70000"], "out of range"),
        (["--db", "ftp://example/x"], "unsupported database URL"),
        (["--synchronous", "SOMETIMES"], "SOMETIMES"),
        (["--db", str(tmp_path)], "is a directory"),
    ]:
        result = run_cli("serve", *args, process=True)
        assert result.exit_code != 0, args
        assert words in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_env_var_bad_value(tmp_path: Path) -> None:
    """A bad CHATLOG_PORT is reported by name."""
    result = run_cli("serve", env={"CHATLOG_PORT": "eighty"})
    assert result.exit_code != 0 and "CHATLOG_PORT" in result.output


def test_db_commands_never_create_a_missing_database(tmp_path: Path) -> None:
    """`db current` and `db downgrade` on a missing file fail and create nothing."""
    missing = tmp_path / "missing.db"
    for args in (["db", "current"], ["db", "downgrade", "base"]):
        result = run_cli(*args, "--db", str(missing))
        assert result.exit_code != 0 and "no database at" in result.output
    assert not missing.exists()


def test_db_upgrade_current_downgrade(tmp_path: Path) -> None:
    """`chatlog db` migrates up, reports the revision, and migrates down to base."""
    path = str(tmp_path / "cli.db")
    assert run_cli("db", "upgrade", "--db", path).exit_code == 0
    assert "(head)" in run_cli("db", "current", "--db", path).output
    assert run_cli("db", "downgrade", "base", "--db", path).exit_code == 0
    after = run_cli("db", "current", "--db", path)
    assert after.exit_code == 1 and "is not a chatlog database" in after.output
