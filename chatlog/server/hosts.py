"""The ``Host`` allowlist against DNS rebinding, checked on every request.

A page on ``evil.example`` whose name an attacker re-points at this server is same-origin with
itself, so an Origin check alone lets it in. Rebinding always needs a *name*, so a ``Host`` that
is an IP literal (``127.0.0.1:8080``, ``[::1]``, ``10.0.0.5``) is always served, as are
``localhost``, the name ``--host`` listens on and every ``--allowed-host``
(``CHATLOG_ALLOWED_HOST``, comma-separated; a leading ``.`` allows the subdomains of a name).
Any other name is refused with 403 and the reason.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

log = logging.getLogger(__name__)

_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]*)(?::\d{1,5})?")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def host_name(header: str) -> str | None:
    """The name of a ``Host`` header without its port, lower-cased (IPv6 in brackets)."""
    match = _HOST.fullmatch(header.strip())
    if match is None or not match.group(1):
        return None
    return match.group(1).lower().rstrip(".")


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class HostAllowlist:
    """Which ``Host`` names this server answers to."""

    def __init__(self, listen_host: str, allowed: Iterable[str]) -> None:
        names = {"localhost", listen_host.lower()}
        names.update(a.strip().lower().rstrip(".") for a in allowed if a.strip())
        self.exact = {n for n in names if not n.startswith(".")}
        self.suffixes = tuple(n for n in names if n.startswith("."))

    def allows(self, header: str | None) -> bool:
        if not header:
            return False  # HTTP/1.1 requires Host; a request without one is refused
        name = host_name(header)
        if name is None:
            return False
        return (
            is_ip_literal(name)
            or name in self.exact
            or any(name.endswith(s) or name == s[1:] for s in self.suffixes)
        )

    def middleware(self) -> Middleware:
        @web.middleware
        async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
            host = request.headers.get("Host")
            if not self.allows(host):
                shown = (host or "")[:100]
                log.warning(
                    "refused request from %s with 403: host %r is not allowed",
                    request.remote,
                    shown,
                )
                raise web.HTTPForbidden(
                    text=f"host {shown!r} is not served here; start the server with "
                    f"--allowed-host {host_name(shown) or 'NAME'} to serve it\n"
                )
            return await handler(request)

        return check_host
