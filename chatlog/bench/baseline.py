"""A bare aiohttp broadcast server that stores nothing: the yardstick of ``chatlog bench``.

It speaks just enough of chatlog's wire protocol for the load generator: a ``Status`` frame
on connect, then every text frame it receives is parsed, stamped with ``Type``, ``Sent``,
``ID`` and ``Room``, encoded once and sent to every socket of the room with ``send_frame``
one client after another ("naive" fan-out, the way most broadcast servers are written).
No database, no validation, no queues: whatever chatlog costs on top of this is the price of
its guarantees. Only a repeated ``Nonce`` (``chatlog bench --retry-share``) is remembered, in
memory, and answered as chatlog does: to its sender alone, with the original's ``ID``.

Run it with ``python -m chatlog.bench.baseline --port 8090``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time
from typing import Any

import orjson
from aiohttp import WSMsgType, web

ROOMS = web.AppKey("rooms", dict)
COUNTER = web.AppKey("counter", itertools.count)
#: (room, nonce) -> the ID of the message first sent with it
NONCES = web.AppKey("nonces", dict)


async def _ws(request: web.Request) -> web.StreamResponse:
    rooms: dict[str, dict[int, web.WebSocketResponse]] = request.app[ROOMS]
    ids: itertools.count[int] = request.app[COUNTER]
    nonces: dict[tuple[str, str], int] = request.app[NONCES]
    room_name = request.query.get("room", "main")
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    room = rooms.setdefault(room_name, {})
    room[id(ws)] = ws
    await ws.send_frame(orjson.dumps({"Type": "Status", "Head": 0}), WSMsgType.TEXT)
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame: dict[str, Any] = orjson.loads(msg.data)
            frame["Type"] = "Chat"
            frame["Sent"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            frame["Room"] = room_name
            nonce = frame.get("Nonce")
            if isinstance(nonce, str):
                original = nonces.get((room_name, nonce))
                if original is not None:
                    frame["ID"] = original
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.send_frame(orjson.dumps(frame), WSMsgType.TEXT)
                    continue
                frame["ID"] = nonces[(room_name, nonce)] = next(ids)
            else:
                frame["ID"] = next(ids)
            data = orjson.dumps(frame)
            for peer in list(room.values()):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await peer.send_frame(data, WSMsgType.TEXT)
    finally:
        room.pop(id(ws), None)
    return ws


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def create_app() -> web.Application:
    """The bare broadcast server's application."""
    app = web.Application()
    app[ROOMS] = {}
    app[COUNTER] = itertools.count(1)
    app[NONCES] = {}
    app.router.add_get("/ws", _ws)
    app.router.add_get("/healthz", _healthz)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the baseline on 127.0.0.1 (``--host`` to change) until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m chatlog.bench.baseline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    web.run_app(create_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
