"""Signed access tokens: HMAC-SHA256 over a small JSON payload (user, optional room, expiry).

A token is ``v1.<payload>.<signature>``, both parts unpadded base64url. The payload is
``{"u": user, "r": room or null, "exp": unix seconds}``. Only a holder of the server's secret
can make one; the server keeps no token state, so a token is valid until it expires. Pure
functions, no I/O: the handshake check lives in :mod:`chatlog.server.guard`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Final

from chatlog.protocol import ProtocolError, parse_alias, parse_room
from chatlog.settings import check_auth_secret

VERSION: Final = "v1"
#: Longest token accepted; anything longer is refused before any decoding work.
MAX_TOKEN_CHARS: Final = 1024
_TTL_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class AuthError(ValueError):
    """A token was refused; the message says why and never contains the token."""


@dataclass(frozen=True, slots=True)
class Token:
    """What a verified token grants: speak as ``user``, in ``room`` only when it is set."""

    user: str
    room: str | None
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise AuthError("the token is malformed")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AuthError("the token is malformed") from None


def _sign(secret: str, payload: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{VERSION}.{payload}".encode("ascii"), hashlib.sha256)
    return _b64(mac.digest())


def issue(
    secret: str, user: str, *, room: str | None = None, ttl: float = 3600, now: float | None = None
) -> str:
    """A token for ``user`` (limited to ``room`` when given) valid for ``ttl`` seconds."""
    check_auth_secret(secret)  # a token serve could not be started to verify is refused
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    user = parse_alias(user)
    if room is not None:
        # The room rule of the handshake, so the token names the room the server will see.
        if not room.strip():
            raise ProtocolError("bad-room", "the room is empty; leave --room out for any room")
        room = parse_room(room)
    now = time.time() if now is None else now
    claims: dict[str, Any] = {"u": user, "r": room, "exp": int(now + ttl)}
    payload = _b64(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{VERSION}.{payload}.{_sign(secret, payload)}"


def verify(secret: str, token: str, *, now: float | None = None) -> Token:
    """The claims of a genuine, unexpired token; :class:`AuthError` for anything else."""
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError("the token is too long")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise AuthError("the token is malformed")
    _, payload, signature = parts
    # Constant-time comparison: the time taken says nothing about how much of it matched.
    if not hmac.compare_digest(_sign(secret, payload), signature):
        raise AuthError("the token's signature is not valid")
    try:
        claims = json.loads(_unb64(payload))
    except (UnicodeDecodeError, ValueError):
        raise AuthError("the token is malformed") from None
    if not isinstance(claims, dict):
        raise AuthError("the token is malformed")
    user, room, expires = claims.get("u"), claims.get("r"), claims.get("exp")
    if type(expires) is not int or not isinstance(user, str):
        raise AuthError("the token is malformed")
    if room is not None and not isinstance(room, str):
        raise AuthError("the token is malformed")
    now = time.time() if now is None else now
    if expires <= now:
        raise AuthError("the token has expired")
    try:
        user = parse_alias(user)
    except ProtocolError:
        raise AuthError("the token's user is not a valid alias") from None
    return Token(user=user, room=room, expires=expires)


def parse_ttl(text: str) -> int:
    """Seconds from ``90s``, ``15m``, ``1h`` or ``7d``; the unit is required (is ``8`` eight
    seconds or eight hours?)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"--ttl {text!r} is not a duration like 90s, 15m, 1h or 7d")
    if not match.group(2):
        number = match.group(1)
        raise ValueError(
            f"--ttl {text!r} has no unit; write {number}s, {number}m, {number}h or {number}d"
        )
    return int(match.group(1)) * _TTL_UNITS[match.group(2)]
