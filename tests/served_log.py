"""A log written by the real server over real sockets, for the history commands' tests
(replay, export, import, sql), on either backend."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from chatlog.settings import Settings
from tests.helpers import Backend, in_thread, open_backend, start_server
from tests.wsclients import b64, ws_url

#: The columns of ``messages``, in the order ``export`` writes them.
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


@dataclass
class ServedLog:
    """A log written by the real server, and the Chat frames its sockets received."""

    backend: Backend
    #: message ID -> the exact text of the Chat frame a socket in the room received.
    wire: dict[int, str] = field(default_factory=dict)

    @property
    def db(self) -> str:
        return self.backend.db

    @property
    def path(self) -> Path:
        """The SQLite file (for tests of file-level things)."""
        return self.backend.path


async def serve_and_chat(settings: Settings, log: ServedLog, rounds: int = 8) -> ServedLog:
    """Start the real server on ``settings``, chat in three rooms over real sockets, stop it."""
    server = await start_server(settings)
    try:
        async with aiohttp.ClientSession() as session:
            rooms = {"lobby": ["alice", "bob"], "dev": ["carol", "dän"], "a b": ["eve"]}
            observers = {}
            senders = []
            for room, names in rooms.items():
                observers[room] = await session.ws_connect(ws_url(server, room=room))
                for name in names:
                    ws = await session.ws_connect(ws_url(server, room=room))
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


class ServedLogs:
    """One served log per backend, written on first use and kept until :meth:`close`."""

    def __init__(self, directory: Path, rounds: int) -> None:
        self.directory = directory
        self.rounds = rounds
        self.logs: dict[str, ServedLog] = {}
        self._stack = contextlib.ExitStack()

    def get(self, kind: str) -> ServedLog:
        if kind not in self.logs:
            where = self.directory / kind
            where.mkdir(exist_ok=True)
            backend = self._stack.enter_context(open_backend(kind, where))
            log = ServedLog(backend)
            self.logs[kind] = in_thread(serve_and_chat(backend.settings(), log, self.rounds))
        return self.logs[kind]

    def close(self) -> None:
        self._stack.close()
