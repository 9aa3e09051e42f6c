"""Who may open a socket: the checks run on the HTTP request, before the WebSocket upgrade.

In order: the ``Origin`` allowlist (403), the signed token when ``--auth-secret`` is set (401;
403 for a room the token does not cover), then the connection caps (503 in total, 429 per
remote address). A refused handshake is logged with its reason and the peer address, never
with the token or the query string. The WebSocket options every socket uses are made here too,
so test apps (the Autobahn echo endpoint) run with exactly the production settings.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from dataclasses import dataclass, field
from typing import Any, NoReturn

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from yarl import URL

from chatlog.server import auth
from chatlog.server.client import CLOSE_TIMEOUT
from chatlog.server.limits import ConnectionLimiter, LimitExceeded
from chatlog.server.quotas import Quotas
from chatlog.settings import Settings

log = logging.getLogger(__name__)

#: Kernel send buffer per socket. A fixed size turns off Linux's autotuning, which lets one
#: stalled reader's socket absorb up to 4 MiB (tcp_wmem max) before the server notices.
SEND_BUFFER_BYTES = 128 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def websocket_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for every ``web.WebSocketResponse`` the server makes.

    Compression stays off: permessage-deflate would let a small frame inflate into a large
    one (a decompression bomb) and costs CPU per frame for short chat lines.
    """
    return {
        # aiohttp refuses a message of max_msg_size bytes or more; ours is the largest accepted.
        "max_msg_size": settings.max_message_bytes + 1,
        "heartbeat": settings.heartbeat or None,
        "compress": False,
        "timeout": CLOSE_TIMEOUT,
        # We answer the peer's close frame ourselves (answer_close): aiohttp 3.14.5 answers
        # the reserved code 1006 with 1000 where RFC 6455 wants 1002 (Autobahn 7.9.5).
        "autoclose": False,
    }


def close_reply(code: int | None) -> int:
    """The code to answer a peer's close frame with: 1000, or 1002 (protocol error) for a
    code RFC 6455 section 7.4 forbids on the wire."""
    if not code or code == 1005:  # an empty close frame
        return 1000
    reserved = code < 1000 or code in (1004, 1005, 1006, 1015) or 1016 <= code < 3000
    return 1002 if reserved or code >= 5000 else 1000


async def answer_close(ws: web.WebSocketResponse) -> None:
    """Complete the closing handshake the peer started (``autoclose`` is off)."""
    if not ws.closed:
        await ws.close(code=close_reply(ws.close_code), drain=False)


def bound_send_buffer(request: web.BaseRequest) -> None:
    """Fix the socket's kernel send buffer, so a peer that stops reading stalls within
    ~``SEND_BUFFER_BYTES`` (x2, as the kernel counts) and its queue overflow is seen soon."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case with the default port dropped; ``None`` if it
    is not an http(s) origin (``null``, ``file://``, garbage)."""
    try:
        url = URL(value.strip())
    except ValueError:
        return None
    scheme = (url.scheme or "").lower()
    if scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
        return None
    if url.user or url.query_string or url.fragment:
        return None
    host = url.host.lower()
    port = url.explicit_port
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _host_port(value: str, default_port: int) -> tuple[str, int] | None:
    match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?", value.strip())
    if match is None:
        return None
    return match.group(1).lower(), int(match.group(2) or default_port)


def same_origin(origin: str, host: str | None, scheme: str | None = None) -> bool:
    """Whether the page that sent ``origin`` was served by this very host and port (and,
    given the request's ``scheme``, over it: ``https`` pages for an ``http`` request are a
    TLS proxy's, which must be listed with ``--allowed-origin``)."""
    normalized = normalize_origin(origin)
    if normalized is None or not host:
        return False
    url = URL(normalized)
    assert url.host is not None and url.scheme is not None
    if scheme is not None and url.scheme != scheme.lower():
        return False
    mine = _host_port(host, _DEFAULT_PORTS[url.scheme])
    host_name = f"[{url.host}]" if ":" in url.host else url.host
    return mine == (host_name.lower(), url.port or _DEFAULT_PORTS[url.scheme])


def request_token(request: web.BaseRequest) -> str | None:
    """The token from ``?token=`` or an ``Authorization: Bearer`` header."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token") or None


@dataclass(eq=False)
class Admission:
    """A handshake that passed every check; ``release`` gives its connection slot back."""

    remote: str
    user: str | None = None
    limiter: ConnectionLimiter | None = field(default=None, repr=False)
    #: The network the remote address counts in (see chatlog.server.quotas).
    network: str = ""
    quotas: Quotas | None = field(default=None, repr=False)

    def release(self) -> None:
        if self.limiter is not None:
            self.limiter.release(self.network or self.remote)
            self.limiter = None

    def take_frame(self) -> bool:
        """One incoming frame against the network's and the user's shared rate."""
        return self.quotas is None or self.quotas.frame(self.network, self.user)


class Guard:
    """The pre-upgrade checks of one running server, with its connection counts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.allowed = {o for o in map(normalize_origin, settings.allowed_origins) if o}
        self.limiter = ConnectionLimiter(settings.max_connections, settings.max_connections_per_ip)
        # --rate 0 (load tests) turns the shared rates off with the per-connection one.
        on = settings.rate > 0
        self.quotas = Quotas(
            frame_rate=settings.network_rate if on else 0,
            frame_burst=settings.network_burst,
            connect_rate=settings.connect_rate if on else 0,
            connect_burst=settings.connect_burst,
            ipv4_prefix=settings.ipv4_prefix,
            ipv6_prefix=settings.ipv6_prefix,
        )
        #: Handshakes refused since start, by HTTP status, for tests and metrics.
        self.refused: dict[int, int] = {}

    def admit(self, request: web.BaseRequest, room: str) -> Admission:
        """Check the handshake for ``room``; raise the HTTP error that refuses it."""
        remote = request.remote or "unknown"
        origin = request.headers.get("Origin")
        if origin is not None and not self.origin_allowed(origin, request.host, request.scheme):
            self._refuse(403, remote, f"origin {origin[:100]!r} is not allowed")
        user = None
        if self.settings.auth_secret:
            token = request_token(request)
            if token is None:
                self._refuse(401, remote, "no token")
            try:
                claims = auth.verify(self.settings.auth_secret, token)
            except auth.AuthError as exc:
                self._refuse(401, remote, str(exc))
            if claims.room is not None and claims.room != room:
                self._refuse(403, remote, f"the token of {claims.user!r} is not valid in {room!r}")
            user = claims.user
        net = self.quotas.network(remote)
        if not self.quotas.connects.take(net):
            self._refuse(429, remote, f"too many new connections from {net}; slow down")
        try:
            self.limiter.acquire(net)
        except LimitExceeded as exc:
            self._refuse(exc.status, remote, exc.reason)
        return Admission(
            remote=remote, user=user, limiter=self.limiter, network=net, quotas=self.quotas
        )

    def origin_allowed(self, origin: str, host: str | None, scheme: str | None = None) -> bool:
        """Same origin as the server (scheme, host and port; the host passed the allowlist),
        or on the ``--allowed-origin`` list (exact match)."""
        if same_origin(origin, host, scheme):
            return True
        normalized = normalize_origin(origin)
        return normalized is not None and normalized in self.allowed

    def _refuse(self, status: int, remote: str, reason: str) -> NoReturn:
        self.refused[status] = self.refused.get(status, 0) + 1
        log.warning("refused handshake from %s with %d: %s", remote, status, reason)
        raise _ERRORS[status](text=f"{reason}\n")


_ERRORS: dict[int, type[web.HTTPException]] = {
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    429: web.HTTPTooManyRequests,
    503: web.HTTPServiceUnavailable,
}


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's access log without query strings (they carry ``token``) or headers."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            time,
        )
