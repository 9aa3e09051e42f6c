"""What one client can make the server hold is bounded in bytes: a slow reader flooding
``History``, resume handshakes that never read, and the server-wide answer budget."""

from __future__ import annotations

import asyncio
import base64
import json
import struct

import aiohttp
from aiohttp.test_utils import TestServer

from chatlog.server.answers import PAGE_BYTES, AnswerBudget, Busy
from chatlog.server.hub import Hub
from chatlog.server.keys import RUNTIME
from tests.helpers import Start, eventually
from tests.wsclients import ChatClient, RawClient, ws_url

QUEUE_BYTES = 512 * 1024
#: A queued item may be accepted into an empty queue whole, and a page of a large answer
#: sits in the transport's buffer: the bound is the limit plus about one page.
BOUND = QUEUE_BYTES + PAGE_BYTES + 256 * 1024
TEXT = "b" * 3000  # about 4 KiB per Chat frame
ROWS = 600


async def seed(server: TestServer, session: aiohttp.ClientSession, room: str) -> ChatClient:
    """Store ``ROWS`` messages of about 4 KiB in ``room``; the sender stays connected."""
    sender = await ChatClient.connect(session, ws_url(server, room=room))
    for i in range(ROWS):
        await sender.say(f"{i} {TEXT}")
    await sender.chats(ROWS, timeout=60)
    return sender


class Peak:
    """Samples, every few milliseconds, the most bytes any one client makes the server hold."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.bytes = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for client in self.hub.clients():
                self.bytes = max(self.bytes, client.held_bytes())
            await asyncio.sleep(0.002)

    def stop(self) -> int:
        self._task.cancel()
        return self.bytes


async def raw_frames(client: RawClient, count: int) -> list[tuple[int, bytes]]:
    """The next ``count`` server frames as (first byte, payload), FIN bit kept."""
    frames = []
    for _ in range(count):
        b1, b2 = await asyncio.wait_for(client.reader.readexactly(2), 10)
        size = b2 & 0x7F
        if size == 126:
            size = struct.unpack("!H", await client.reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await client.reader.readexactly(8))[0]
        frames.append((b1, await client.reader.readexactly(size)))
    return frames


async def test_a_large_history_answer_is_one_frame_written_in_fragments(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A 2 MB History answer reaches the client as one frame, sent as several fragments."""
    server = await start()
    sender = await seed(server, session, "big")
    await sender.ws.send_str(json.dumps({"History": {"Limit": 500}}))
    history = await sender.recv("History")
    ids = [m["ID"] for m in history["Messages"]]
    assert ids == list(range(ids[0], ids[0] + 500)) and ids[-1] == ROWS
    assert history["Complete"] is False
    assert base64.b64decode(history["Messages"][-1]["Message"]).decode() == f"{ROWS - 1} {TEXT}"
    raw = await RawClient.connect("127.0.0.1", server.port, "/ws?room=big")
    await raw.send_text(json.dumps({"History": {"Limit": 500}}))
    frames = await raw_frames(raw, 3)  # Status, userlist, then the first fragment
    assert frames[2][0] == 0x01, "a large History answer is not fragmented"
    payload = frames[2][1]
    while True:
        (b1, more), *_ = await raw_frames(raw, 1)
        assert b1 & 0x0F == 0, "a frame came between the fragments of the answer"
        payload += more
        if b1 & 0x80:
            break
    assert json.loads(payload) == history
    raw.close()


async def test_a_slow_reader_flooding_history_holds_at_most_its_byte_bound(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """20 History requests of 2 MB from a client that never reads: the bytes it makes the
    server hold stay under --client-queue-bytes plus a page, and it is closed."""
    server = await start(client_queue_bytes=QUEUE_BYTES, send_timeout=1.0)
    sender = await seed(server, session, "flood")
    hub = server.app[RUNTIME].hub
    peak = Peak(hub)
    attacker = await RawClient.connect("127.0.0.1", server.port, "/ws?room=flood", rcvbuf=4096)
    for _ in range(20):
        await attacker.send_text(json.dumps({"History": {"Limit": 500}}))
    for i in range(100):  # live frames pile up behind the stalled answer
        await sender.say(f"live {i} {TEXT}")
    await sender.chats(100, timeout=30)
    await eventually(lambda: len(hub.rooms["flood"]) == 1, timeout=20)
    held = peak.stop()
    assert held <= BOUND, f"one client made the server hold {held} bytes (bound {BOUND})"
    answers = server.app[RUNTIME].answers
    await eventually(lambda: answers.in_flight == 0, timeout=10)
    attacker.close()
    # The honest client still gets its answers.
    await sender.ws.send_str(json.dumps({"History": {"Limit": 10}}))
    assert len((await sender.recv("History"))["Messages"]) == 10


async def test_resume_handshakes_that_never_read_hold_a_page_each(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """8 handshakes with since=0 on a 2.4 MB backlog, never read: each holds about a page,
    all are dropped, and a reading client then gets the whole backlog in order."""
    server = await start(client_queue_bytes=QUEUE_BYTES, send_timeout=1.0)
    sender = await seed(server, session, "resume")
    hub = server.app[RUNTIME].hub
    peak = Peak(hub)
    attackers = [
        await RawClient.connect("127.0.0.1", server.port, "/ws?room=resume&since=0", rcvbuf=4096)
        for _ in range(8)
    ]
    for i in range(50):
        await sender.say(f"live {i}")
    await sender.chats(50, timeout=30)
    await eventually(lambda: len(hub.rooms["resume"]) == 1, timeout=30)
    held = peak.stop()
    assert held <= BOUND, f"one resume made the server hold {held} bytes (bound {BOUND})"
    for attacker in attackers:
        attacker.close()
    reader = await ChatClient.connect(session, ws_url(server, room="resume", since=0))
    chats = await reader.chats(ROWS + 50, timeout=30)
    assert [c["ID"] for c in chats] == list(range(1, ROWS + 51))
    resumed = await reader.recv("Resumed")
    assert resumed["Complete"] is True and resumed["To"] == ROWS + 50


async def test_history_beyond_the_answer_budget_is_refused_busy(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """With the budget taken by a stalled answer, History gets a busy Error, then works."""
    server = await start(answer_budget_bytes=1, send_timeout=60.0)
    sender = await seed(server, session, "busy")
    answers = server.app[RUNTIME].answers
    assert answers.slots == 1
    stalled = await RawClient.connect("127.0.0.1", server.port, "/ws?room=busy", rcvbuf=4096)
    await stalled.send_text(json.dumps({"History": {"Limit": 500}}))
    await eventually(lambda: answers.in_flight == 1)
    await sender.ws.send_str(json.dumps({"History": {"Limit": 5}}))
    error = await sender.recv("Error")
    assert error["Code"] == "busy"
    stalled.close()
    await eventually(lambda: answers.in_flight == 0, timeout=10)
    await sender.ws.send_str(json.dumps({"History": {"Limit": 5}}))
    assert len((await sender.recv("History"))["Messages"]) == 5
    text = server.app[RUNTIME].metrics.exposition().decode()
    assert "chatlog_answers_busy_total 1.0" in text


async def test_the_answer_budget_has_slots_and_refuses_after_its_wait() -> None:
    """The budget makes slots of its bytes, at least one, and raises Busy after the wait."""
    budget = AnswerBudget(1)
    assert budget.slots == 1
    async with budget.slot():
        try:
            async with budget.slot(wait=0.05):
                raise AssertionError("a second slot was given")
        except Busy:
            pass
    async with budget.slot(wait=0.05):
        assert budget.in_flight == 1
    assert budget.refused == 1 and budget.in_flight == 0 and budget.peak == 1
