"""Hypothesis feeds random frames to a live server: it stays up and the log stays consistent.

The server runs as a ``chatlog serve`` subprocess for the whole module; every example opens
a fresh connection in a fresh room, sends its frames and then a sentinel, and checks that the
room holds exactly the messages the pure parser accepts, nothing else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatlog import protocol
from tests.backends import rows
from tests.helpers import ServerProcess
from tests.wsclients import b64

KEYS = ["Message", "User", "History", "Nonce", "Author", "Before", "Limit", "x"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from([b64("hi"), b64("ok\x00"), "aGk", "", "####", b64("\x07")])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


def _dump(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


no_surrogates = st.characters(blacklist_categories=("Cs",))
frames = st.one_of(
    st.text(alphabet=no_surrogates, max_size=60),  # any text at all
    json_values.map(_dump),  # JSON-ish, often routed, often wrong
    st.tuples(json_values.map(_dump), st.integers(0, 30)).map(lambda t: t[0][: t[1]]),  # cut
    st.builds(
        lambda body, extra: json.dumps({"Message": body, **extra}),
        st.sampled_from([b64("hello"), b64("héllo"), b64("a\tb"), "aGVsbG8=", "aGVs bG8="]),
        st.dictionaries(st.sampled_from(["Nonce", "Author", "x"]), scalars, max_size=2),
    ),
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("fuzz") / "fuzz.db") as server:
        yield server


def expected_rows(texts: list[str]) -> int:
    """How many messages the server must store for these frames (nonces dedupe in a room)."""
    count, nonces = 0, set()
    for text in texts:
        try:
            parsed = protocol.parse_client_frame(text)
        except protocol.ProtocolError:
            continue
        if isinstance(parsed, protocol.Chat):
            if parsed.nonce is None:
                count += 1
            elif parsed.nonce not in nonces:
                nonces.add(parsed.nonce)
                count += 1
    return count


async def _exchange(port: int, room: str, texts: list[str]) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"ws://127.0.0.1:{port}/ws?room={room}")
        for text in texts:
            await ws.send_str(text)
        sentinel = b64(f"sentinel {room}")
        await ws.send_str(json.dumps({"Message": sentinel}))
        async with asyncio.timeout(10):
            async for msg in ws:
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                if sentinel in msg.data and '"Chat"' in msg.data:
                    break
        await ws.close()


_rooms = iter(range(10**6))


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(texts=st.lists(frames, max_size=12))
def test_random_frames_keep_server_up_and_log_consistent(
    live: ServerProcess, texts: list[str]
) -> None:
    """Random text and JSON-ish frames: only valid chats are stored; the server answers on."""
    room = f"fuzz{next(_rooms)}"
    asyncio.run(_exchange(live.port, room, texts))
    stored = rows(live.db, "select count(*) from messages where room = ?", room)
    assert stored[0][0] == expected_rows(texts) + 1  # + the sentinel
    assert rows(live.db, "pragma quick_check") == [("ok",)]


def test_log_is_intact_after_fuzzing(live: ServerProcess) -> None:
    """After all examples: integrity_check ok and every stored raw frame parses again."""
    assert rows(live.db, "pragma integrity_check") == [("ok",)]
    for (raw,) in rows(live.db, "select raw from messages"):
        assert isinstance(protocol.parse_client_frame(raw), protocol.Chat)
