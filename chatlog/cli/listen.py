"""``serve`` checks its address before it touches the database, and says where it serves.

:func:`check_port` binds the address the way the server will (``SO_REUSEADDR``, every address
the host name resolves to) and lets go at once, so a busy port is one line before anything is
created or migrated. :func:`start_line` is the one line ``serve`` prints once it listens.
"""

from __future__ import annotations

import errno
import re
import socket

from chatlog.settings import Settings, SettingsError


class CannotListen(SettingsError):
    """The server cannot listen where it was asked to; the message says what to do."""


def check_port(host: str, port: int) -> None:
    """Raise :class:`CannotListen` if ``host:port`` cannot be listened on right now."""
    if port == 0:
        return  # the system picks a free port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CannotListen(
            f"cannot listen on {host} ({(exc.strerror or 'unknown host').lower()}); "
            "give an address of this machine with --host or CHATLOG_HOST"
        ) from None
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise CannotListen(
                        f"port {port} on {host} is in use; pick another with --port or CHATLOG_PORT"
                    ) from None
                reason = (exc.strerror or str(exc)).lower()
                raise CannotListen(
                    f"cannot listen on {host} port {port} ({reason}); pick another with "
                    "--port or CHATLOG_PORT (ports below 1024 need privileges)"
                ) from None


def _kib(n: int) -> str:
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"


def _cap(n: int) -> str:
    return "no cap" if n == 0 else str(n)


def start_line(settings: Settings, banner: str, database: str, revision: str | None) -> str:
    """The one line ``serve`` prints when it listens (``banner`` is aiohttp's own, whose
    ``Running on URL`` holds the port actually bound, also for ``--port 0``)."""
    match = re.search(r"Running on (\S+)", banner)
    base = match.group(1).rstrip("/") if match else f"http://{settings.host}:{settings.port}"
    ws = "ws" + base.removeprefix("http")
    rate = (
        "no rate limit"
        if settings.rate == 0
        else f"{settings.rate:g} frames/s (burst {settings.burst})"
    )
    limits = [
        f"messages up to {_kib(settings.max_message_bytes)}",
        f"{rate} per connection",
        f"connections {_cap(settings.max_connections)} "
        f"({_cap(settings.max_connections_per_ip)} per address)",
        "auth on" if settings.auth_secret else "auth off",
    ]
    if settings.retain_days is not None or settings.retain_messages is not None:
        kept = [f"{settings.retain_days:g} days"] if settings.retain_days is not None else []
        if settings.retain_messages is not None:
            kept.append(f"{settings.retain_messages} messages per room")
        limits.append("retention " + " and ".join(kept))
    return (
        f"chatlog serving the page at {base}/ and WebSocket {ws}/ws on {database} "
        f"(schema {revision}); limits: {', '.join(limits)}; Ctrl-C stops"
    )
