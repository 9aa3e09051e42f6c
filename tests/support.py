"""Test helpers: a small WebSocket chat client speaking the wire protocol over a real socket."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp

TIMEOUT = 10.0


def b64(text: str, encoding: str = "utf-8") -> str:
    return base64.b64encode(text.encode(encoding)).decode()


class ChatClient:
    """A real WebSocket client; ``recv`` skips frames until the wanted type arrives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.status: dict[str, Any] | None = None
        #: The user list received right after the Status frame.
        self.users: list[dict[str, str]] = []

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, url: str, **kw: Any) -> ChatClient:
        client = cls(await session.ws_connect(url, **kw))
        client.status = await client.recv("Status")
        client.users = (await client.recv("userlist"))["Users"]
        return client

    @property
    def ws_id(self) -> str:
        assert self.status is not None
        return str(self.status["WSID"])

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {msg.type!r} {msg.data!r}")
        frame = json.loads(msg.data)
        self.seen.append(frame)
        return frame  # type: ignore[no-any-return]

    async def recv(self, type_: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next()
                if frame.get("Type") == type_:
                    return frame

    async def recv_chat(self, text: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Skip frames until the Chat frame carrying ``text`` arrives."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv("Chat")
                if frame.get("Message") == b64(text):
                    return frame

    async def chats(self, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        return [await self.recv("Chat", timeout) for _ in range(count)]

    async def say(self, text: str, **extra: Any) -> None:
        await self.ws.send_str(json.dumps({"Message": b64(text), "Author": "x", **extra}))

    async def alias(self, name: str) -> dict[str, Any]:
        await self.ws.send_str(json.dumps({"User": name}))
        return await self.recv("userlist")

    async def until_users(self, *names: str, timeout: float = TIMEOUT) -> None:
        """Skip user lists until one lists exactly ``names``, in that order."""
        want = [{"User": name} for name in names]
        async with asyncio.timeout(timeout):
            while (await self.recv("userlist"))["Users"] != want:
                pass

    async def closed(self, timeout: float = TIMEOUT) -> aiohttp.WSMessage:
        """Read until the server closes; return the close message."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return msg

    async def close(self) -> None:
        await self.ws.close()
