"""The HTTP server API under ``/api/``: post into the log, read it, see who is online.

Off unless an API key is configured (``--api-key`` / ``CHATLOG_API_KEY``). Every route but
``/api/openapi.json`` needs ``Authorization: Bearer KEY``, compared in constant time; the key
is never logged. Messages go through the server's own writer and are answered 201 only after
their commit, so the ID returned is durable and live sockets get the row like any other;
``Idempotency-Key`` is the message's nonce, so a retry is stored once. Errors are RFC 9457
``application/problem+json``. The document at ``/api/openapi.json`` (:mod:`.api_spec`)
describes exactly these routes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from chatlog import protocol
from chatlog.log.model import NewMessage, StoredMessage
from chatlog.log.post import active_rooms, new_message, room_summaries
from chatlog.log.writer import WriterClosed
from chatlog.server.api_spec import SPEC
from chatlog.server.keys import RUNTIME, SETTINGS
from chatlog.server.limits import TokenBucket

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BUCKET = web.AppKey("api-rate", TokenBucket)
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    413: "Content Too Large",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


class Problem(Exception):
    """An API error: its status and a one-line detail for people."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem(status: int, detail: str) -> web.Response:
    """An RFC 9457 answer."""
    body = {"type": "about:blank", "title": _TITLES[status], "status": status, "detail": detail}
    response = web.json_response(body, status=status, content_type="application/problem+json")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="chatlog"'
    return response


def _guarded(handler: Handler) -> Handler:
    """Key, rate limit, and every failure as a problem answer."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            _authorize(request)
            if not request.app[_BUCKET].take():
                raise Problem(429, "too many API requests; slow down")
            return await handler(request)
        except Problem as exc:
            return problem(exc.status, exc.detail)
        except protocol.ProtocolError as exc:
            return problem(400, exc.message)
        except WriterClosed:
            return problem(503, "the server is shutting down; nothing was stored")

    return guarded


def _authorize(request: web.Request) -> None:
    key = request.app[SETTINGS].api_key or ""
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode("utf-8", "replace"), key.encode("utf-8")
    ):
        raise Problem(401, "give the API key as Authorization: Bearer KEY")


async def _body(request: web.Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object of the request, at most ``--max-message-bytes``, only ``fields``."""
    limit = request.app[SETTINGS].max_message_bytes
    if (request.content_length or 0) > limit:
        raise Problem(413, f"the body is over {limit} bytes")
    data = bytearray()
    while chunk := await request.content.readany():
        data += chunk
        if len(data) > limit:
            raise Problem(413, f"the body is over {limit} bytes")
    try:
        value = protocol.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8") from None
    except protocol.ProtocolError as exc:
        raise Problem(400, f"the body is not valid JSON ({exc.message})") from None
    if not isinstance(value, dict):
        raise Problem(400, "the body must be a JSON object")
    extra = sorted(set(value) - set(fields))
    if extra:
        raise Problem(400, f"unknown field {extra[0]!r}; give {', '.join(fields)}")
    for name in fields:
        if name in value and not isinstance(value[name], str):
            raise Problem(400, f'"{name}" must be a string')
    if "text" not in value:
        raise Problem(400, 'the body needs "text"')
    return value


def _room(request: web.Request) -> str:
    return protocol.parse_room(request.match_info["room"])


def _stored(message: StoredMessage) -> dict[str, Any]:
    return {"ID": message.id, "Sent": protocol.format_sent(message.sent_at), "Room": message.room}


async def _post(request: web.Request, messages: list[NewMessage]) -> list[StoredMessage]:
    writer = request.app[RUNTIME].writer
    try:
        return list(await asyncio.gather(*(writer.post(m) for m in messages)))
    except WriterClosed:
        raise
    except Exception as exc:
        log.error("API post failed: %s", exc)
        raise Problem(503, f"the message was not stored ({type(exc).__name__})") from None


async def post_message(request: web.Request) -> web.Response:
    """``POST /api/rooms/{room}/messages``."""
    room = _room(request)
    nonce = request.headers.get("Idempotency-Key")
    body = await _body(request, ("text", "author"))
    message = new_message(
        room, body["text"], author=body.get("author", protocol.SYSTEM_AUTHOR), nonce=nonce
    )
    [stored] = await _post(request, [message])
    headers = {"Idempotent-Replayed": "true"} if stored.duplicate else {}
    return web.json_response(_stored(stored), status=201, headers=headers)


async def broadcast(request: web.Request) -> web.Response:
    """``POST /api/broadcast``: every room, as ``chatlog broadcast --all``."""
    body = await _body(request, ("text",))
    async with request.app[RUNTIME].log.core_view() as view:
        rooms = await active_rooms(view.conn)
    stored = await _post(request, [new_message(room, body["text"]) for room in rooms])
    return web.json_response({"Messages": [_stored(m) for m in stored]}, status=201)


def _int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise Problem(400, f"{name} must be a non-negative integer")
    return int(value)


async def read_messages(request: web.Request) -> web.Response:
    """``GET /api/rooms/{room}/messages?after=&before=&limit=``."""
    room = _room(request)
    after, before = _int_param(request, "after"), _int_param(request, "before")
    limit = _int_param(request, "limit") or protocol.HISTORY_DEFAULT_LIMIT
    limit = min(limit, protocol.HISTORY_MAX_LIMIT)
    async with request.app[RUNTIME].log.view() as view:
        floor = await view.room_floor(room)
        if after is None:
            rows = await view.before(room, before, limit + 1)
            history = protocol.history_frame(
                [m.frame() for m in rows[-limit:]], more=len(rows) > limit, floor=floor
            )
            del history["Type"]
            return web.json_response(history)
        upto = before - 1 if before is not None else await view.room_head(room)
        rows = await view.after(room, after, upto, limit + 1)
    more = len(rows) > limit
    page: dict[str, Any] = {"Messages": [m.frame() for m in rows[:limit]]}
    page["Complete"] = not more and after >= floor
    if more:
        page["Reason"] = "limit"
    elif after < floor:
        page.update(Reason="retention", From=floor + 1)
    return web.json_response(page)


async def rooms(request: web.Request) -> web.Response:
    """``GET /api/rooms``."""
    async with request.app[RUNTIME].log.core_view() as view:
        return web.json_response({"Rooms": await room_summaries(view.conn)})


async def users(request: web.Request) -> web.Response:
    """``GET /api/rooms/{room}/users``: from the presence tables, so every process's."""
    room = _room(request)
    async with request.app[RUNTIME].log.view() as view:
        return web.json_response({"Room": room, "Users": await view.room_aliases(room)})


async def openapi(_request: web.Request) -> web.Response:
    """``GET /api/openapi.json``."""
    return web.json_response(SPEC)


async def not_found(request: web.Request) -> web.Response:
    """Any other path under ``/api/``."""
    return problem(404, f"no API route {request.method} {request.path}")


def add_routes(app: web.Application) -> None:
    """The API's routes (only when an API key is configured)."""
    settings = app[SETTINGS]
    app[_BUCKET] = TokenBucket(settings.rate, settings.burst)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/api/rooms", _guarded(rooms))
    app.router.add_post("/api/rooms/{room}/messages", _guarded(post_message))
    app.router.add_get("/api/rooms/{room}/messages", _guarded(read_messages))
    app.router.add_get("/api/rooms/{room}/users", _guarded(users))
    app.router.add_post("/api/broadcast", _guarded(broadcast))
    app.router.add_route("*", "/api/{tail:.*}", not_found)
