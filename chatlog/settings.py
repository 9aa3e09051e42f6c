"""One frozen settings object, read from ``CHATLOG_*`` variables and overridden by CLI flags.

Nothing here is read at import time: :meth:`Settings.from_env` takes the environment as an
argument, and :func:`database_url` turns ``--db`` (a plain file path or a URL) into the
SQLAlchemy URL from which :mod:`chatlog.log.open` picks the backend.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
#: Variables not named CHATLOG_<FIELD>: the flag is ``--allowed-origin``, repeatable.
_ENV_NAMES = {
    "allowed_origins": "CHATLOG_ALLOWED_ORIGIN",
    "allowed_hosts": "CHATLOG_ALLOWED_HOST",
}


#: Shortest secret that may sign tokens (``serve --auth-secret`` and ``token issue``).
MIN_SECRET_CHARS = 16


class SettingsError(ValueError):
    """A configuration value is unusable; the message says which and what to do."""


def check_auth_secret(secret: str) -> None:
    """The one rule for a token secret, applied by ``serve`` and by ``token issue``."""
    if len(secret) < MIN_SECRET_CHARS:
        raise SettingsError(
            f"auth-secret must be at least {MIN_SECRET_CHARS} characters (it is {len(secret)})"
        )


def env_name(field_name: str) -> str:
    """The environment variable of the setting ``field_name`` (``port``: ``CHATLOG_PORT``)."""
    return _ENV_NAMES.get(field_name, f"CHATLOG_{field_name.upper()}")


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to run, validated once at start-up."""

    host: str = "127.0.0.1"
    port: int = 8080
    db: str = "chatlog.db"
    #: Largest accepted text frame, in bytes (larger closes with 1009).
    max_message_bytes: int = 64 * 1024
    #: SQLite ``PRAGMA synchronous``; FULL makes every commit durable on power loss.
    synchronous: str = "FULL"
    #: Outgoing batches a client may have waiting before it is closed as too slow.
    client_queue: int = 1024
    #: Bytes a client may have queued or held back before it is closed as too slow (1013).
    client_queue_bytes: int = 4 * 2**20
    #: Bytes the server's large answers (History, resume backlogs) in flight may take in all.
    answer_budget_bytes: int = 64 * 2**20
    #: Most rows one group commit may carry.
    batch_max: int = 1000
    #: Seconds between WebSocket pings; a peer that misses one is closed.
    heartbeat: float = 30.0
    #: Most backlog messages a resume sends; beyond it the client is told to page history.
    resume_max: int = 10_000
    #: Retention: delete messages older than this many days (``None``: keep forever).
    retain_days: float | None = None
    #: Retention: keep only this many newest messages per room (``None``: no cap).
    retain_messages: int | None = None
    #: Seconds between retention passes.
    retain_every: float = 60.0
    log_format: str = "text"
    log_level: str = "INFO"
    #: ``asyncio`` or ``uvloop`` (measured: about 6 % less server CPU per delivery).
    event_loop: str = "asyncio"
    #: Origins (besides the server's own) whose pages may open sockets; see chatlog.server.guard.
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    #: Host names (besides IP literals, localhost and --host) the server answers to; see
    #: chatlog.server.hosts (DNS rebinding).
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    #: Secret that signs access tokens; set, every handshake needs one (``None``: no auth).
    auth_secret: str | None = None
    #: Frames per second one connection may send (token bucket; 0 turns the limit off).
    rate: float = 50.0
    #: Frames a connection may send at once before ``rate`` applies.
    burst: int = 200
    #: Most open sockets in total (0: no cap); beyond it handshakes get 503.
    max_connections: int = 10_000
    #: Most open sockets per remote address (0: no cap); beyond it handshakes get 429.
    max_connections_per_ip: int = 256
    #: Frames per second all connections of one network (and of one token user) may send,
    #: across reconnects; ``rate`` 0 turns it off too.
    network_rate: float = 200.0
    network_burst: int = 400
    #: New connections per second from one network (429 beyond; ``rate`` 0 turns it off too).
    connect_rate: float = 20.0
    connect_burst: int = 100
    #: The prefix lengths addresses are grouped by for the per-address caps and rates.
    ipv4_prefix: int = 24
    ipv6_prefix: int = 64
    #: Seconds a new TCP connection has to send its complete HTTP request (slowloris guard).
    handshake_timeout: float = 10.0
    #: Seconds a socket may refuse our writes (peer not reading) before it is closed (1013).
    send_timeout: float = 5.0
    #: Seconds after sending within which its author may edit or delete a message (None: any
    #: time).
    edit_window: float | None = None
    #: Seconds between this server's heartbeats in the ``nodes`` table (several processes on
    #: one log, SQLite or PostgreSQL).
    node_heartbeat: float = 2.0
    #: A node silent this long is dead and its users are swept (SQLite also sweeps a node
    #: whose process is gone at once).
    node_timeout: float = 10.0
    #: Key of the HTTP server API under ``/api/`` (``Authorization: Bearer KEY``); ``None``:
    #: the API is off. Not in the repr, so a logged Settings never shows it.
    api_key: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the log database."""
        return database_url(self.db)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``CHATLOG_*`` variables, then apply non-``None`` overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`SettingsError` with a clear message for any unusable value."""
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port {self.port} is out of range; use 0-65535")
        if self.max_message_bytes < 64:
            raise SettingsError("max-message-bytes must be at least 64")
        if self.synchronous.upper() not in SYNCHRONOUS_LEVELS:
            raise SettingsError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, "
                f"not {self.synchronous!r}"
            )
        if min(self.client_queue, self.batch_max, self.resume_max) < 1:
            raise SettingsError("client-queue, batch-max and resume-max must be at least 1")
        if self.client_queue_bytes < 64 * 1024 or self.answer_budget_bytes < 1:
            raise SettingsError(
                "client-queue-bytes must be at least 65536 and answer-budget-bytes positive"
            )
        if self.heartbeat < 0:
            raise SettingsError("heartbeat must be 0 (off) or a positive number of seconds")
        if self.retain_days is not None and self.retain_days <= 0:
            raise SettingsError("retain-days must be a positive number of days")
        if self.retain_messages is not None and self.retain_messages < 1:
            raise SettingsError("retain-messages must be at least 1")
        if self.retain_every <= 0:
            raise SettingsError("retain-every must be a positive number of seconds")
        if self.event_loop not in ("asyncio", "uvloop"):
            raise SettingsError("event-loop must be 'asyncio' or 'uvloop'")
        if self.rate < 0 or self.burst < 1:
            raise SettingsError("rate must be 0 (off) or positive, and burst at least 1")
        if (
            min(self.network_rate, self.connect_rate) < 0
            or min(self.network_burst, self.connect_burst) < 1
        ):
            raise SettingsError(
                "network-rate and connect-rate must be 0 (off) or positive, bursts at least 1"
            )
        if not (0 <= self.ipv4_prefix <= 32 and 0 <= self.ipv6_prefix <= 128):
            raise SettingsError("ipv4-prefix must be 0-32 and ipv6-prefix 0-128")
        if min(self.max_connections, self.max_connections_per_ip) < 0:
            raise SettingsError("max-connections and max-connections-per-ip must be 0 or more")
        if min(self.handshake_timeout, self.send_timeout) <= 0:
            raise SettingsError("handshake-timeout and send-timeout must be positive seconds")
        if self.auth_secret is not None:
            check_auth_secret(self.auth_secret)
        if self.api_key is not None and len(self.api_key) < 16:
            raise SettingsError("api-key must be at least 16 characters")
        if not 0 < self.node_heartbeat < self.node_timeout:
            raise SettingsError("node-heartbeat must be positive and shorter than node-timeout")
        if self.edit_window is not None and self.edit_window < 0:
            raise SettingsError("edit-window must be 0 or a positive number of seconds")
        if self.log_format not in ("text", "json"):
            raise SettingsError("log-format must be 'text' or 'json'")
        database_url(self.db)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed, validated again."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new


def _coerce(name: str, type_: Any, raw: str) -> Any:
    kind = str(type_).removesuffix(" | None")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise SettingsError(f"CHATLOG_{name.upper()}={raw!r} is not a number") from None
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def database_url(db: str) -> str:
    """Turn ``--db`` (a SQLAlchemy URL or a plain file path) into an async SQLAlchemy URL."""
    if not db:
        raise SettingsError("--db is empty; give a file path like chatlog.db or a database URL")
    if "://" not in db:
        # Quoted: SQLAlchemy splits a URL at "?" and unquotes "%XX", so a path holding "#",
        # "?" or "%" must reach it escaped to come back out exactly.
        return f"sqlite+aiosqlite:///{quote(str(Path(db).expanduser()), safe='/')}"
    scheme, _, rest = db.partition("://")
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return f"sqlite+aiosqlite://{rest}"
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    raise SettingsError(
        f"unsupported database URL scheme {scheme!r}; use a file path, sqlite:///FILE "
        "or postgresql+asyncpg://USER@HOST/DB"
    )
