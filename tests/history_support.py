"""Helpers for the history-command tests: a log written by the real server, and the CLI runner."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import pty
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from click.testing import CliRunner, Result

from chatlog.cli.main import main
from chatlog.server.app import create_app
from chatlog.settings import Settings
from tests.support import b64

COLUMNS = ("id", "room", "ws_id", "author", "message", "text", "raw", "sent_at", "nonce")

#: Chat texts the server accepts that a transcript must still show safely.
TRICKY = [
    "plain hello",
    "tab\there",
    "two\nlines\r\n",
    "bidi \u202e gnirts",
    "emoji 😀 and ünïcödé",
    'quote " and back\\slash',
    "zero\u200bwidth and nbsp\u00a0here",
    "line\u2028separator",
]


def run_cli(*args: str, input: bytes | None = None) -> Result:
    """Run ``chatlog ARGS`` in-process with click's runner (stderr kept apart)."""
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def in_thread(coro: Any) -> Any:
    """Run a coroutine on its own loop in a worker thread (fixtures and sync tests use this)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


@dataclass
class ServedLog:
    """A log file written by the real server, and the Chat frames its sockets received."""

    path: Path
    #: message ID -> the exact text of the Chat frame a socket in the room received.
    wire: dict[int, str] = field(default_factory=dict)


async def serve_and_chat(path: Path, rounds: int = 8) -> ServedLog:
    """Start the real server on ``path``, chat in three rooms over real sockets, stop it."""
    log = ServedLog(path)
    server = TestServer(create_app(Settings(db=str(path), heartbeat=0, rate=0)))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            rooms = {"lobby": ["alice", "bob"], "dev": ["carol", "dän"], "a b": ["eve"]}
            observers = {}
            senders = []
            for room, names in rooms.items():
                url = server.make_url("/ws").with_query(room=room)
                observers[room] = await session.ws_connect(url)
                for name in names:
                    ws = await session.ws_connect(url)
                    await ws.send_str(json.dumps({"User": name}))
                    senders.append(ws)
            sent = 0
            for round_ in range(rounds):
                for i, ws in enumerate(senders):
                    text = TRICKY[(round_ + i) % len(TRICKY)]
                    extra: dict[str, Any] = {"Round": round_} if i % 2 else {}
                    if i == 1:
                        extra["Nonce"] = f"n{round_}"
                    await ws.send_str(json.dumps({"Message": b64(text), "Author": "x", **extra}))
                    sent += 1
                if round_ == 1:  # a retry with a used nonce is stored once
                    await senders[1].send_str(
                        json.dumps({"Message": b64("retry"), "Nonce": "n0", "Round": 0})
                    )
                    latin1 = base64.b64encode(b"caf\xe9").decode()  # the original page's btoa
                    await ws.send_str(json.dumps({"Message": latin1}))
                    sent += 1
                await asyncio.sleep(0.03)  # spread sent_at so time windows have edges
            async with asyncio.timeout(10):
                while len(log.wire) < sent:
                    for ws in observers.values():
                        try:
                            msg = await ws.receive(timeout=0.05)
                        except TimeoutError:
                            continue
                        if msg.type is aiohttp.WSMsgType.TEXT and '"Type":"Chat"' in msg.data:
                            log.wire[json.loads(msg.data)["ID"]] = msg.data
            for ws in [*senders, *observers.values()]:
                await ws.close()
    finally:
        await server.close()
    return log


def backup(source: Path, target: Path) -> Path:
    """A consistent copy of a SQLite log (the WAL included)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def run_on_terminal(stream: str, args: list[str]) -> tuple[int, bytes]:
    """Run the real CLI in a subprocess with ``stream`` ("stdout" or "stderr") on a
    pseudo-terminal and the other one discarded; return the exit code and what the terminal
    received."""
    cmd = [sys.executable, "-m", "chatlog", *args]
    leader, follower = pty.openpty()
    # A fresh pty is 0x0; tqdm would fit its bar into zero columns and print nothing.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO once the child has closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, stream: follower}
    proc = subprocess.Popen(cmd, stdout=streams["stdout"], stderr=streams["stderr"])
    os.close(follower)
    code = proc.wait(60)
    reader.join(10)
    os.close(leader)
    return code, b"".join(chunks)
