"""A hypothesis state machine over a real server: connect, send, retry a nonce, drop, resume,
purge and restart, checking the replay invariants after every step."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chatlog.log.open import open_log
from chatlog.log.retention import Policy, purge
from chatlog.settings import Settings, database_url
from tests.backends import rows
from tests.helpers import start_server
from tests.wsclients import ChatClient, b64, ws_url

SLOTS = 3


@dataclass
class View:
    """What one logical client has been shown, across its reconnects."""

    ids: list[int] = field(default_factory=list)
    socket: ChatClient | None = None


class ChatLog(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.db = self.dir / "h.db"
        self.loop = asyncio.new_event_loop()
        self.server: TestServer | None = None
        self.port: int | None = None
        self.session: aiohttp.ClientSession = self.run(self._session())
        self.views = [View() for _ in range(SLOTS)]
        self.shown: dict[int, str] = {}
        self.nonces: dict[str, int] = {}
        self.floor = 0
        self.counter = 0
        self.run(self._start())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    async def _start(self) -> None:
        self.server = await start_server(Settings(db=str(self.db), heartbeat=0), port=self.port)
        self.port = self.server.port

    def url(self, **query: Any) -> str:
        assert self.server is not None
        return ws_url(self.server, **query)

    def open_views(self) -> list[View]:
        return [v for v in self.views if v.socket is not None]

    # --- rules ----------------------------------------------------------------------------

    @rule(slot=st.integers(0, SLOTS - 1))
    def connect_or_resume(self, slot: int) -> None:
        view = self.views[slot]
        if view.socket is not None:
            return
        if not view.ids:
            view.socket = self.run(ChatClient.connect(self.session, self.url()))
            return
        since = view.ids[-1]

        async def resume() -> None:
            client = await ChatClient.connect(self.session, self.url(since=since))
            got: list[int] = []
            while (frame := await client.next())["Type"] != "Resumed":
                if frame["Type"] == "Chat":
                    got.append(frame["ID"])
                    self.shown[frame["ID"]] = frame["Message"]
            assert got == self.sql_ids(after=since), "resume differs from the SQL range"
            assert frame["Complete"] is (since >= self.floor)
            view.ids.extend(got)
            view.socket = client

        self.run(resume())

    @precondition(lambda self: self.open_views())
    @rule(data=st.data(), with_nonce=st.booleans())
    def send(self, data: st.DataObject, with_nonce: bool) -> None:
        sender = data.draw(st.sampled_from(self.open_views()))
        self.counter += 1
        text = f"msg {self.counter}"
        nonce = f"n{self.counter}" if with_nonce else None
        self.run(self._send(sender, text, nonce, expect_new=True))

    @precondition(lambda self: self.open_views() and self.nonces)
    @rule(data=st.data())
    def retry_nonce(self, data: st.DataObject) -> None:
        sender = data.draw(st.sampled_from(self.open_views()))
        nonce = data.draw(st.sampled_from(sorted(self.nonces)))
        self.run(self._send(sender, f"retry of {nonce}", nonce, expect_new=False))

    async def _send(self, sender: View, text: str, nonce: str | None, expect_new: bool) -> None:
        assert sender.socket is not None
        extra = {"Nonce": nonce} if nonce else {}
        await sender.socket.say(text, **extra)
        if not expect_new and self.nonces[nonce] <= self.floor:  # type: ignore[index]
            expect_new = True  # the original was purged: a new row is a fresh message
            del self.nonces[nonce]  # type: ignore[arg-type]
        frame = await sender.socket.recv("Chat")
        if not expect_new:
            assert frame["ID"] == self.nonces[nonce], "a retried nonce got a new ID"  # type: ignore[index]
            return
        msg_id = frame["ID"]
        self.shown[msg_id] = frame["Message"]
        if nonce:
            self.nonces[nonce] = msg_id
        sender.ids.append(msg_id)
        for view in self.open_views():
            if view is sender:
                continue
            got = await view.socket.recv("Chat")  # type: ignore[union-attr]
            assert got["ID"] == msg_id
            view.ids.append(msg_id)

    @precondition(lambda self: self.open_views())
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        view = data.draw(st.sampled_from(self.open_views()))
        self.run(view.socket.close())  # type: ignore[union-attr]
        view.socket = None

    @rule(keep=st.integers(1, 4))
    def purge(self, keep: int) -> None:
        async def run() -> None:
            log = open_log(database_url(str(self.db)), access="write")
            try:
                report = await purge(log, Policy(messages=keep))
            finally:
                await log.dispose()
            self.floor = max(self.floor, report.floors.get("main", 0))

        self.run(run())

    @rule()
    def restart(self) -> None:
        async def run() -> None:
            for view in self.open_views():
                await view.socket.close()  # type: ignore[union-attr]
                view.socket = None
            assert self.server is not None
            await self.server.close()
            await self._start()

        self.run(run())

    # --- invariants -----------------------------------------------------------------------

    def sql_ids(self, after: int = 0) -> list[int]:
        return [
            i for (i,) in rows(self.db, "select id from messages where id > ? order by id", after)
        ]

    @invariant()
    def shown_messages_are_stored(self) -> None:
        stored = dict(rows(self.db, "select id, message from messages"))
        for nonce, msg_id in self.nonces.items():
            count = rows(self.db, "select count(*) from messages where nonce=?", nonce)
            assert count[0][0] <= 1
            assert msg_id in stored or msg_id <= self.floor
        for msg_id, body in self.shown.items():
            assert stored.get(msg_id) == body or msg_id <= self.floor

    @invariant()
    def views_are_strictly_increasing(self) -> None:
        for view in self.views:
            assert view.ids == sorted(set(view.ids))

    def teardown(self) -> None:
        async def close() -> None:
            for view in self.open_views():
                await view.socket.close()  # type: ignore[union-attr]
            await self.session.close()
            if self.server is not None:
                await self.server.close()

        try:
            self.run(close())
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


ChatLog.TestCase.settings = settings(
    max_examples=int(os.environ.get("CHATLOG_STATEFUL_EXAMPLES", "12")),
    stateful_step_count=14,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestChatLog = ChatLog.TestCase
TestChatLog.__doc__ = "Resume equals the SQL range; shown is stored; no ID twice; nonces once."

__all__ = ["TestChatLog", "b64"]
