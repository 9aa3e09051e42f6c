"""What a new user meets first: `serve`'s start line and busy port, `token issue`'s checks,
`--help`'s summaries, typed `-p` parameters, and output that reads the same on both backends."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from chatlog.log import migrate
from tests.helpers import ServerProcess, free_port, run_cli


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
