"""One WebSocket connection, from handshake to close: the port of ``Chat.Server``'s ``Server()``.

On open the client gets its Status frame, then the room's user list, then (when it asked with
``since``) the backlog it missed and a ``Resumed`` marker. After that it is live. Every refused
frame gets an ``Error`` frame and an ``errors`` row; the connection carries on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import socket
import struct
from collections.abc import Callable
from typing import Any

from aiohttp import WSMessage, WSMsgType, web

from chatlog import protocol
from chatlog.log import presence
from chatlog.log.model import NewMessage, Op
from chatlog.log.writer import WriterClosed
from chatlog.server import answers, edits
from chatlog.server.client import Client, ClientGone
from chatlog.server.guard import answer_close, bound_send_buffer, websocket_options
from chatlog.server.keys import GUARD, RUNTIME, Runtime
from chatlog.server.limits import RateLimiter, Verdict
from chatlog.server.search import answer_around, answer_search

log = logging.getLogger(__name__)

_RATE_MESSAGE = "too many frames; slow down (the frame was not processed)"
_LOCKED_MESSAGE = "the alias is fixed by your token"


def new_ws_id() -> str:
    """24 characters of base64 over 16 random bytes, like an IRIS WebSocketID."""
    return base64.b64encode(secrets.token_bytes(16)).decode()


def handshake_query(request: web.Request) -> tuple[str, int | None]:
    """The room and ``since`` of a handshake, or 400 saying what is wrong with them (or with
    ``epoch``)."""
    try:
        protocol.parse_epoch(request.query.get("epoch"))
        return (
            protocol.parse_room(request.query.get("room")),
            protocol.parse_since(request.query.get("since")),
        )
    except protocol.ProtocolError as exc:
        raise web.HTTPBadRequest(text=f"{exc.message}\n") from None


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """``GET /ws`` (and the original's ``/csp/user/Chat.Server.cls``)."""
    runtime = request.app[RUNTIME]
    room, since = handshake_query(request)
    # Origin, token and connection caps are checked before the upgrade (403/401/429/503).
    admission = request.app[GUARD].admit(request, room)
    try:
        # Pings come to the read loop (autoping off), so they count against the rate limits.
        ws = web.WebSocketResponse(**websocket_options(runtime.settings), autoping=False)
        bound_send_buffer(request)
        await ws.prepare(request)
        session = Session(
            runtime,
            ws,
            room=room,
            remote=request.remote,
            user=admission.user,
            shared=admission.take_frame,
        )
        session.transport = request.transport
        await session.run(since=since, client_epoch=request.query.get("epoch"))
        return ws
    finally:
        admission.release()
        _drop_if_stalled(request.transport)


def _drop_if_stalled(transport: asyncio.BaseTransport | None) -> None:
    """Abort a socket whose peer stopped reading: ``close()`` would first wait to flush
    what is buffered, which such a peer never takes, and the socket would stay open."""
    if isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: reset now, so the kernel frees the unread send buffer at once too.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("could not record a connection: %s", future.exception())


class Session:
    """The life of one connection."""

    def __init__(
        self,
        runtime: Runtime,
        ws: web.WebSocketResponse,
        *,
        room: str,
        remote: str | None,
        user: str | None = None,
        shared: Callable[[], bool] | None = None,
    ) -> None:
        self.rt = runtime
        self.ws = ws
        #: The token's user when auth is on: the alias, fixed for the connection's life.
        self.user = user
        #: The TCP transport, to drop a peer that stopped reading (see _kick_slow).
        self.transport: asyncio.BaseTransport | None = None
        self.limiter = RateLimiter(runtime.settings.rate, runtime.settings.burst, shared=shared)
        self.client = Client(
            ws,
            ws_id=new_ws_id(),
            room=room,
            remote=remote,
            queue_size=runtime.settings.client_queue,
            queue_bytes=runtime.settings.client_queue_bytes,
            on_overflow=self._overflow,
        )

    @property
    def ws_id(self) -> str:
        return self.client.ws_id

    @property
    def log_extra(self) -> dict[str, str]:
        """The ``extra`` of this connection's log lines (fields of ``--log-format json``)."""
        return {"ws_id": self.client.ws_id, "room": self.client.room}

    async def run(self, *, since: int | None, client_epoch: str | None) -> None:
        rt, client = self.rt, self.client
        try:
            # Queued, not awaited: the writer runs ops in order, so this row lands before any
            # alias or close of the same connection, and the greeting need not wait for fsync.
            opened = await rt.writer.submit(
                presence.open_connection(client.ws_id, client.room, rt.node, client.remote)
            )
            opened.add_done_callback(_log_failure)
        except WriterClosed:
            await self.ws.close(code=protocol.CLOSE_GOING_AWAY, message=b"server shutting down")
            return
        if self.user is not None:
            # Set before joining the hub, so the room sees the user and the user's own list
            # (sent by _greet) includes itself.
            client.alias = self.user
            aliases = await self._presence(presence.set_alias(client.ws_id, client.room, self.user))
            if aliases is not None:
                rt.hub.broadcast(client.room, protocol.userlist_frame(aliases))
                rt.feed.presence_changed(client.room, aliases)
        client.start()
        # Hold live frames from the moment the client is in the hub until the backlog is
        # queued: whatever commits in between is either in the backlog or released after it.
        client.hold()
        rt.hub.add(client)
        log.info(
            "connection %s opened in %r from %s",
            client.ws_id,
            client.room,
            client.remote,
            extra=self.log_extra,
        )
        try:
            await self._greet(since, client_epoch)
            await self._read_loop()
        except ClientGone:
            pass  # closed while a large answer was being written to it
        finally:
            # Shielded: a handler cancelled by a dropped peer still removes its rows.
            await asyncio.shield(rt.hub.spawn(self._leave()))

    async def _greet(self, since: int | None, client_epoch: str | None) -> None:
        rt, client = self.rt, self.client
        async with rt.log.view() as view:
            head = await view.room_head(client.room)
            client.send(protocol.status_frame(client.ws_id, head=head, epoch=rt.epoch))
            client.send(protocol.userlist_frame(await view.room_aliases(client.room)))
        if since is not None:
            # Waits for room in the server's answer budget; the backlog is read page by page.
            async with rt.answers.slot():
                await self._resume(since, head, client_epoch)
        client.release(head)

    async def _resume(self, since: int, head: int, client_epoch: str | None) -> None:
        client, limit, room = self.client, self.rt.settings.resume_max, self.client.room
        epoch_changed = client_epoch is not None and client_epoch != self.rt.epoch
        self.rt.metrics.resumes.inc()
        if epoch_changed:
            since = 0  # the client's IDs belong to another log
        async with self.rt.log.view() as view:
            floor = await view.room_floor(room)
            start = max(since, floor)
            # IDs are unique, so a range no wider than the limit cannot exceed it: skip the
            # look.
            over = head - start > limit and await view.more_than(room, start, head, limit)
        if not over and start < head:
            page = answers.pager(self.rt.log, room, head)
            await answers.send_backlog(client, page, start, self.rt.metrics.replayed.inc)
        client.send(
            protocol.resumed_frame(
                start=start,
                head=head,
                epoch=self.rt.epoch,
                complete=not over and since >= floor,
                reason="limit" if over else "retention" if since < floor else None,
                limit=limit,
                epoch_changed=epoch_changed,
            )
        )

    async def _history(self, request: protocol.HistoryRequest) -> None:
        if request.around is not None:
            await answer_around(self.rt, self.client, request)
            return
        # Page by page within the server's answer budget; one answer at a time per
        # connection, as the read loop awaits it (see chatlog.server.answers).
        try:
            async with self.rt.answers.slot(wait=answers.HISTORY_WAIT):
                await answers.send_history(self.client, self.rt.log, request)
        except answers.Busy:
            self.client.send(protocol.error_frame("busy", answers.BUSY_MESSAGE))

    async def _read_loop(self) -> None:
        async for msg in self.ws:
            if msg.type is WSMsgType.TEXT:
                self.rt.metrics.frames_in += 1
                await self._on_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await self._record("binary-frame", "binary frames are not accepted")
                await self.client.close(protocol.CLOSE_UNSUPPORTED_DATA, "text frames only")
                return
            elif msg.type is WSMsgType.PING or msg.type is WSMsgType.PONG:
                if not await self._on_control(msg):
                    return
            elif msg.type is WSMsgType.ERROR:
                break
        await answer_close(self.ws)
        exc = self.ws.exception()
        if exc is not None and not self.client.closing:
            # Also when aiohttp failed the socket while no read was waiting (a missed pong).
            # The detail starts with the close code aiohttp sent (1002, 1007, 1009).
            await self._record("protocol-error", f"{getattr(exc, 'code', '?')}: {exc}")

    async def _on_control(self, msg: WSMessage) -> bool:
        """A ping or pong counts like a frame: over the rate a ping goes unanswered, and a
        flood of them closes the connection (1008). ``False`` once closed."""
        verdict = self.limiter.check()
        if verdict is Verdict.CLOSE:
            await self._record("flood", f"{self.limiter.refusals} frames over the rate limit")
            await self.client.close(protocol.CLOSE_POLICY_VIOLATION, "flooding")
            return False
        if verdict is Verdict.ACCEPT and msg.type is WSMsgType.PING:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.pong(msg.data)
        return True

    async def _on_text(self, text: str) -> None:
        verdict = self.limiter.check()
        if verdict is Verdict.REFUSE:
            # No errors row per refused frame: a flood must not become a flood of rows.
            self.client.send(protocol.error_frame("rate-limited", _RATE_MESSAGE))
            return
        if verdict is Verdict.CLOSE:
            await self._record("flood", f"{self.limiter.refusals} frames over the rate limit")
            await self.client.close(protocol.CLOSE_POLICY_VIOLATION, "flooding")
            return
        try:
            frame = protocol.parse_client_frame(text)
        except protocol.ProtocolError as exc:
            await self._refuse(exc.code, exc.message, text)
            return
        client = self.client
        if isinstance(frame, protocol.Chat):
            await self.rt.writer.append(
                NewMessage(
                    room=client.room,
                    ws_id=client.ws_id,
                    author=client.author,
                    body=frame.body,
                    text=frame.text,
                    raw=text,
                    fields=frame.fields,
                    nonce=frame.nonce,
                )
            )
        elif isinstance(frame, protocol.Alias):
            if self.user is not None and frame.name != self.user:
                await self._refuse("alias-locked", _LOCKED_MESSAGE, text)
                return
            aliases = await self._presence(
                presence.set_alias(client.ws_id, client.room, frame.name)
            )
            if aliases is None:
                client.send(protocol.error_frame("store-failed", "the alias was not stored"))
                return
            client.alias = frame.name
            self.rt.hub.broadcast(client.room, protocol.userlist_frame(aliases))
            self.rt.feed.presence_changed(client.room, aliases)
        elif isinstance(frame, protocol.SearchFrame):
            bad = await answer_search(self.rt, client, frame)
            if bad is not None:
                await self._refuse("bad-query", bad, text)
        elif isinstance(frame, protocol.HistoryRequest):
            await self._history(frame)
        else:
            await edits.handle(self.rt, client, self.user, frame, text, self._refuse)

    async def _presence(self, op: Op) -> Any:
        """Run a presence write; ``None`` when the database refuses it (disk full, read-only).

        Presence is secondary to the log: a socket that cannot get its row still reads
        history and resumes; the next start-up sweep removes rows left behind.
        """
        try:
            return await self.rt.writer.execute(op)
        except WriterClosed:
            raise
        except Exception as exc:
            log.warning("presence write for %s failed: %s", self.ws_id, str(exc)[:200])
            return None

    async def _refuse(self, code: str, message: str, text: str) -> None:
        await self._record(code, f"{message}: {text[:200]!r}")
        self.client.send(protocol.error_frame(code, message))

    async def _record(self, kind: str, detail: str) -> None:
        log.info(
            "refused frame from %s (%s): %s", self.ws_id, kind, detail[:200], extra=self.log_extra
        )
        self.rt.metrics.errors.labels(kind).inc()
        try:
            await self.rt.writer.execute(presence.record_error(self.ws_id, kind, detail))
        except Exception as exc:  # the error log itself failing must not end the connection
            log.error("could not record error %s: %s", kind, exc, extra=self.log_extra)

    def _overflow(self, client: Client) -> None:
        log.warning(
            "closing slow client %s: its outgoing queue is full", self.ws_id, extra=self.log_extra
        )
        self.rt.metrics.slow_closes.inc()
        self.rt.hub.remove(client)
        self.rt.hub.spawn(self._kick_slow())

    async def _kick_slow(self) -> None:
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
            # The peer is not reading at all: a close frame would wait behind the data it
            # does not take, so reset the connection now.
            await self._record("slow-consumer", "not reading; connection reset")
            _drop_if_stalled(transport)
            return
        await self._record("slow-consumer", "outgoing queue overflowed")
        await self.client.close(protocol.CLOSE_SLOW_CONSUMER, "too slow to keep up")
        _drop_if_stalled(transport)

    async def _leave(self) -> None:
        rt, client = self.rt, self.client
        rt.hub.remove(client)
        try:
            aliases = await self._presence(presence.close_connection(client.ws_id, client.room))
        except WriterClosed:
            aliases = None  # shutting down: the next start-up sweeps the row
        if aliases is not None and client.alias is not None:
            rt.hub.broadcast(client.room, protocol.userlist_frame(aliases))
            rt.feed.presence_changed(client.room, aliases)
        await client.stop()
        log.info(
            "connection %s closed (code %s)", self.ws_id, self.ws.close_code, extra=self.log_extra
        )
