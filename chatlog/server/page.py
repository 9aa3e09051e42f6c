"""The chat page: ``GET /`` (``/?room=NAME``) and its static files.

The files live in ``chatlog/static`` and ship inside the package: plain JavaScript and CSS, no
build step and no CDN, so the page works on a machine without internet. Every response carries a
strict Content-Security-Policy (no inline scripts or styles, sockets and files from this origin
only) and ``X-Content-Type-Options: nosniff``; the page itself puts chat data into the DOM only
as text, and the policy is the second wall should that ever slip.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

from aiohttp import web

# The WebSocket handler's room rule, so a bad room is refused before the page loads.
from chatlog.server.connection import handshake_query
from chatlog.server.keys import SETTINGS

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
    "img-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files, always revalidated: an upgraded server never runs against a stale chat.js.
    "Cache-Control": "no-cache",
}
#: The only files served from ``/static/``, with their types (nothing else is reachable).
ASSETS: Final = {
    "chat.js": "text/javascript",
    "search.js": "text/javascript",
    "chat.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
#: Replaced in index.html by the server's frame limit, so the page refuses an oversized message
#: itself instead of having the server close the socket with 1009.
MAX_BYTES_MARK: Final = b"__MAX_MESSAGE_BYTES__"


@functools.cache
def read_asset(name: str) -> bytes:
    """The bytes of one file of ``chatlog/static``, read once on first use."""
    return (resources.files("chatlog.server") / "static" / name).read_bytes()


async def index(request: web.Request) -> web.Response:
    """``GET /``: the chat page; ``?room=NAME`` is read by the page's script."""
    handshake_query(request)
    limit = request.app[SETTINGS].max_message_bytes
    html = read_asset("index.html").replace(MAX_BYTES_MARK, str(limit).encode())
    return web.Response(
        body=html, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS
    )


async def asset(request: web.Request) -> web.Response:
    """``GET /static/{name}``: one of :data:`ASSETS`."""
    name = request.match_info["name"]
    content_type = ASSETS.get(name)
    if content_type is None:
        raise web.HTTPNotFound(text="no such file\n")
    return web.Response(
        body=read_asset(name), content_type=content_type, charset="utf-8", headers=SECURITY_HEADERS
    )


def add_routes(app: web.Application) -> None:
    """Serve the page at ``/`` and its files under ``/static/``."""
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", asset)
