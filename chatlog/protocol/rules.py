"""The rules of values on the wire: limits, close codes, strict JSON, bodies, aliases, rooms
and the handshake's query. Pure: no I/O."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Final

import orjson

#: The constant body of the original's Status frame (base64 of a fixed English sentence).
STATUS_MESSAGE: Final = "c3RhdHVzIHVwZGF0ZSwgdGhpcyBzaG91bGRuJ3QgYmUgcHJvY2Vzc2VkIGFzIG1lc3NhZ2U="
MAX_ALIAS_CHARS: Final = 64
#: The author of the server's own messages (the original's ``BroadCast``); no client may take
#: it as an alias (trimmed, any case).
SYSTEM_AUTHOR: Final = "system"
MAX_NONCE_CHARS: Final = 64
MAX_DEPTH: Final = 16
HISTORY_DEFAULT_LIMIT: Final = 50
HISTORY_MAX_LIMIT: Final = 500
DEFAULT_ROOM: Final = "main"
SEARCH_DEFAULT_LIMIT: Final = 20
SEARCH_MAX_LIMIT: Final = 100
#: Longest ``Search`` query, in characters.
SEARCH_MAX_QUERY: Final = 512
MAX_ROOM_CHARS: Final = 64
MAX_EPOCH_CHARS: Final = 64
_INT_LIMIT: Final = 2**63
# The C0 and C1 controls, DEL included, minus tab, LF and CR: one regex scan per message
# instead of a Python loop per character (profiled: 10% of the server's ingest CPU).
_FORBIDDEN_CONTROL: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


#: Close codes (RFC 6455 section 7.4.1) and when the server sends them.
CLOSE_GOING_AWAY: Final = 1001  # the server is shutting down
CLOSE_UNSUPPORTED_DATA: Final = 1003  # a binary frame: text frames only
CLOSE_POLICY_VIOLATION: Final = 1008  # flooding: still over the rate limit after many refusals
CLOSE_TOO_BIG: Final = 1009  # a frame over --max-message-bytes (sent by aiohttp)
CLOSE_SLOW_CONSUMER: Final = 1013  # "try again later": the client cannot keep up


class ProtocolError(ValueError):
    """A client frame was refused. ``code`` is stable and documented; ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ProtocolError("duplicate-key", "the frame has the same key twice")
    return obj


def _constant(name: str) -> Any:
    raise ProtocolError("invalid-number", f"{name} is not a number JSON allows")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError("invalid-number", f"the number {text[:20]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text) > 20:
        raise ProtocolError("invalid-number", "a number in the frame is too large")
    value = int(text)
    if not -_INT_LIMIT <= value < _INT_LIMIT:
        raise ProtocolError("invalid-number", "a number in the frame is too large")
    return value


_decoder = json.JSONDecoder(
    object_pairs_hook=_object, parse_constant=_constant, parse_float=_float, parse_int=_int
)


def loads(text: str) -> Any:
    """Strict JSON: no NaN or Infinity, no duplicate keys, 64-bit integers, bounded depth."""
    try:
        value = _decoder.decode(text)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError("too-deep", "the frame is nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError("invalid-json", f"the frame is not valid JSON ({exc})") from None
    # Fast path for the usual frame: strict JSON forbids raw control characters in strings,
    # so in all-ASCII text without a \u escape no string can hold a NUL or a lone surrogate,
    # and fewer brackets than MAX_DEPTH cannot nest deeper than it.
    if not (
        text.isascii() and "\\u" not in text and text.count("{") + text.count("[") <= MAX_DEPTH
    ):
        _check_value(value, 0)
    return value


def _check_value(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ProtocolError("too-deep", f"the frame is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        check_string(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_string(key)
            _check_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1)


def check_string(value: str) -> None:
    # A NUL is legal JSON (\u0000) but truncates text in C APIs and in SQLite's length(),
    # so a relayed value holding one would look different in SQL than on the wire.
    if "\x00" in value:
        raise ProtocolError("invalid-text", "the frame holds a NUL character")
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("invalid-text", "the frame holds a lone surrogate") from None


def decode_body(body: str) -> str:
    """Strict base64, then UTF-8, falling back to Latin-1 (the original page's ``btoa`` bytes)."""
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid-base64", '"Message" is not valid base64') from None
    if not raw:
        raise ProtocolError("empty-message", "the message is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    bad = _FORBIDDEN_CONTROL.search(text)
    if bad is not None:
        raise ProtocolError(
            "invalid-text", f"the message holds the control character U+{ord(bad.group()):04X}"
        )
    return text


def parse_alias(value: Any) -> str:
    """A trimmed alias of 1 to 64 printable characters, not :data:`SYSTEM_AUTHOR`."""
    if not isinstance(value, str):
        raise ProtocolError("invalid-alias", '"User" must be a string')
    name = value.strip()
    if not 0 < len(name) <= MAX_ALIAS_CHARS or not name.isprintable():
        raise ProtocolError(
            "invalid-alias", f"an alias must be 1 to {MAX_ALIAS_CHARS} printable characters"
        )
    if name.casefold() == SYSTEM_AUTHOR:
        raise ProtocolError(
            "reserved-alias", f"the alias {SYSTEM_AUTHOR!r} is kept for the server's messages"
        )
    return name


def parse_room(value: str | None) -> str:
    """The ``?room=`` of a handshake: trimmed, 1 to 64 printable characters, ``main`` if unset."""
    room = (value or "").strip() or DEFAULT_ROOM
    if len(room) > MAX_ROOM_CHARS or not room.isprintable():
        raise ProtocolError("bad-room", f"room must be 1 to {MAX_ROOM_CHARS} printable characters")
    return room


def parse_since(value: str | None) -> int | None:
    """The ``?since=`` of a handshake: the last message ID the client saw (``None``: unset)."""
    if value is None or value == "":
        return None
    # ASCII digits only (str.isdigit also takes "²" and other scripts' digits), and no more
    # than 19 of them before int() (which refuses 4,300 digits and more with a ValueError).
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) >= _INT_LIMIT:
        raise ProtocolError(
            "bad-since", f"since must be a message ID of ASCII digits, 0 to {_INT_LIMIT - 1}"
        )
    return int(value)


def parse_epoch(value: str | None) -> str | None:
    """The ``?epoch=`` of a handshake: the log epoch the client last saw (``None``: unset)."""
    if value is None or value == "":
        return None
    if len(value) > MAX_EPOCH_CHARS or not (value.isascii() and value.isalnum()):
        raise ProtocolError(
            "bad-epoch", f"epoch must be 1 to {MAX_EPOCH_CHARS} ASCII letters and digits"
        )
    return value


def encode(frame: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, keys in insertion order, non-ASCII as-is."""
    return orjson.dumps(frame)
