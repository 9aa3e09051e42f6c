"""An echo endpoint with the chat server's exact WebSocket settings, for Autobahn (kosoku).

The chat endpoint answers frames with chat semantics (JSON, Error frames, 1003 for binary),
which the conformance cases do not expect; this app echoes instead but builds its sockets
with :func:`chatlog.server.guard.websocket_options`, the same options ``/ws`` uses.

Serve it and run the full conformance run by hand::

    python -m tests.echo_app --port 9001 &
    kosoku ws://127.0.0.1:9001/echo -i '1.*' -i '2.*' -i '3.*' -i '4.*' -i '5.*' \\
        -i '6.*' -i '7.*' -i '9.*' -i '10.*' -o reports/autobahn
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web

from chatlog.server.guard import answer_close, websocket_options
from chatlog.settings import Settings


def create_echo_app(settings: Settings) -> web.Application:
    """``GET /echo``: echo every text and binary message back, as Autobahn expects."""

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(**websocket_options(settings))
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        await answer_close(ws)
        return ws

    app = web.Application()
    app.router.add_get("/echo", echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Echo endpoint for Autobahn/kosoku runs.")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument(
        "--max-message-bytes", type=int, default=Settings.max_message_bytes, help="as serve's"
    )
    args = parser.parse_args()
    settings = Settings(heartbeat=0, max_message_bytes=args.max_message_bytes)
    web.run_app(create_echo_app(settings), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
