"""The ``serve`` flags for who may connect and how much: Origin, auth, rate and caps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

FC = TypeVar("FC", bound=Callable[..., Any])

_OPTIONS = (
    click.option(
        "--allowed-origin",
        "allowed_origin",
        multiple=True,
        help="An Origin (scheme://host[:port]) whose pages may connect, besides the server's "
        "own; repeatable. Env: CHATLOG_ALLOWED_ORIGIN (comma-separated).",
    ),
    click.option(
        "--allowed-host",
        "allowed_host",
        multiple=True,
        help="A host name the server answers to, besides IP addresses, localhost and --host "
        "(.example.com: its subdomains too); repeatable. Env: CHATLOG_ALLOWED_HOST.",
    ),
    click.option(
        "--auth-secret",
        help="Require tokens signed with this secret (see `chatlog token issue`). "
        "Env: CHATLOG_AUTH_SECRET (preferred: flags show in ps).",
    ),
    click.option(
        "--api-key",
        help="Turn on the HTTP API under /api/ for holders of this key (Bearer). "
        "Env: CHATLOG_API_KEY (preferred: flags show in ps).",
    ),
    click.option("--rate", type=float, help="Frames/s per connection; 0 turns it off (50)."),
    click.option("--burst", type=int, help="Frames a connection may send at once (200)."),
    click.option("--max-connections", type=int, help="Most sockets in total; 0: no cap (10000)."),
    click.option(
        "--max-connections-per-ip", type=int, help="Most sockets per address; 0: no cap (256)."
    ),
    click.option(
        "--network-rate",
        type=float,
        help="Frames/s per network and per token user, across reconnects (200).",
    ),
    click.option("--network-burst", type=int, help="Burst of --network-rate (400)."),
    click.option(
        "--connect-rate", type=float, help="New connections/s per network; beyond: 429 (20)."
    ),
    click.option("--connect-burst", type=int, help="Burst of --connect-rate (100)."),
    click.option(
        "--ipv4-prefix", type=int, help="Addresses count per IPv4 network of this prefix (24)."
    ),
    click.option(
        "--ipv6-prefix", type=int, help="Addresses count per IPv6 network of this prefix (64)."
    ),
    click.option(
        "--handshake-timeout",
        type=float,
        help="Seconds a connection has to send its HTTP request (10).",
    ),
    click.option(
        "--send-timeout",
        type=float,
        help="Seconds a peer may leave our writes unread before it is closed with 1013 (5).",
    ),
)


def security_options(func: FC) -> FC:
    """Add the limit and access flags to a command."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def security_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Turn the flags into Settings overrides (no ``--allowed-origin``: keep the env's)."""
    flags = dict(flags)
    origins = flags.pop("allowed_origin", ())
    flags["allowed_origins"] = tuple(origins) or None
    hosts = flags.pop("allowed_host", ())
    flags["allowed_hosts"] = tuple(hosts) or None
    return flags
