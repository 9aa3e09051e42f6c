"""The wire protocol, pure: parse client frames into small typed objects and build server frames.

Nothing here does I/O or imports aiohttp, so every rule is tested without sockets. Frames are
compact JSON in insertion order with non-ASCII text as-is, as IRIS ``%ToJSON()`` writes them.

Client to server (routed by which key is present, never by substring):

* ``{"Message": base64, "Author": name, ...}`` a chat message (``Author`` is replaced by the
  connection's alias; other keys are relayed as received; optional ``Nonce`` for idempotency);
* ``{"User": name}`` set or replace the alias;
* ``{"History": {"Before": id, "Limit": n}}`` ask for older messages of the room
  (``{"History": {"Around": id, "Limit": n}}``: the messages around one, to show a hit);
* ``{"Search": {"Query": text, "Limit": n, "Before": id}}`` full-text search of the room;
* ``{"Edit": {"ID": id, "Message": base64}}`` replace the text of one's own message;
* ``{"Delete": {"ID": id}}`` delete one's own message (its text is erased).

The handshake's query (``?room=``, ``?since=``) is checked here too, and every close code the
server sends is named here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
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


@dataclass(frozen=True, slots=True)
class Chat:
    """A chat message: the client's object as received, its base64 body and the decoded text."""

    fields: dict[str, Any]
    body: str
    text: str
    nonce: str | None


@dataclass(frozen=True, slots=True)
class Alias:
    """Set or replace this connection's alias."""

    name: str


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """Up to ``limit`` messages of the room with ID below ``before`` (``None``: the newest)."""

    before: int | None
    limit: int
    #: Instead of ``before``: the messages around this ID, it included.
    around: int | None = None


@dataclass(frozen=True, slots=True)
class SearchFrame:
    """Up to ``limit`` messages of the room matching ``query``, newest first, with ID below
    ``before`` (``None``: from the newest)."""

    query: str
    limit: int
    before: int | None


@dataclass(frozen=True, slots=True)
class EditRequest:
    """Replace the text of message ``target`` with ``body`` (base64 of ``text``)."""

    target: int
    body: str
    text: str


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """Delete message ``target``: a tombstone keeps its ID, its text is erased."""

    target: int


ClientFrame = Chat | Alias | HistoryRequest | SearchFrame | EditRequest | DeleteRequest
#: The keys that route a client frame, in the order they are reported.
_ROUTES: Final = ("Message", "User", "History", "Search", "Edit", "Delete")


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
        _check_string(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_string(key)
            _check_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1)


def _check_string(value: str) -> None:
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


def parse_client_frame(text: str) -> ClientFrame:
    """Parse one text frame from a client; raise :class:`ProtocolError` saying what is wrong."""
    obj = loads(text)
    if not isinstance(obj, dict):
        raise ProtocolError("not-an-object", "a frame must be a JSON object")
    routes = [key for key in _ROUTES if key in obj]
    if not routes:
        raise ProtocolError(
            "unknown-frame",
            'a frame needs a "Message", "User", "History", "Search", "Edit" or "Delete" key',
        )
    if len(routes) > 1:
        raise ProtocolError("ambiguous-frame", f"a frame may hold only one of {', '.join(routes)}")
    if routes[0] == "Message":
        return _chat(obj)
    if routes[0] == "User":
        return Alias(parse_alias(obj["User"]))
    if routes[0] == "History":
        return _history(obj["History"])
    if routes[0] == "Search":
        return _search(obj["Search"])
    return _change(routes[0], obj[routes[0]])


def _change(route: str, value: Any) -> EditRequest | DeleteRequest:
    example = '{"ID": 12, "Message": "aGk="}' if route == "Edit" else '{"ID": 12}'
    if not isinstance(value, dict):
        raise ProtocolError("bad-type", f'"{route}" must be an object like {example}')
    target = value.get("ID")
    if type(target) is not int or target < 1:
        raise ProtocolError("bad-type", f'"{route}" needs the "ID" of a message')
    if route == "Delete":
        return DeleteRequest(target)
    body = value.get("Message")
    if not isinstance(body, str):
        raise ProtocolError("bad-type", '"Edit" needs "Message", a base64 string')
    return EditRequest(target, body, decode_body(body))


def _chat(obj: dict[str, Any]) -> Chat:
    body = obj["Message"]
    if not isinstance(body, str):
        raise ProtocolError("bad-type", '"Message" must be a base64 string')
    nonce = obj.get("Nonce")
    if nonce is not None and (
        not isinstance(nonce, str)
        or not 0 < len(nonce) <= MAX_NONCE_CHARS
        or not nonce.isprintable()
    ):
        raise ProtocolError(
            "bad-type", f'"Nonce" must be a string of 1 to {MAX_NONCE_CHARS} printable chars'
        )
    return Chat(fields=obj, body=body, text=decode_body(body), nonce=nonce)


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


def compose_chat(text: str, *, author: str, nonce: str | None = None) -> tuple[Chat, str]:
    """A message the server itself writes (``chatlog broadcast``, the HTTP API), as a client's
    Chat frame would be: the parsed :class:`Chat` and its raw JSON. Raises ProtocolError."""
    if not isinstance(text, str) or not text:
        raise ProtocolError("empty-message", "the message is empty")
    _check_string(text)
    name = author.strip() if isinstance(author, str) else ""
    if not 0 < len(name) <= MAX_ALIAS_CHARS or not name.isprintable():
        raise ProtocolError(
            "invalid-alias", f"an author must be 1 to {MAX_ALIAS_CHARS} printable characters"
        )
    body = base64.b64encode(text.encode("utf-8")).decode("ascii")
    fields: dict[str, Any] = {"Message": body, "Author": name}
    if nonce is not None:
        fields["Nonce"] = nonce
    chat = _chat(fields)
    return chat, encode(fields).decode("utf-8")


def _history(value: Any) -> HistoryRequest:
    if not isinstance(value, dict):
        raise ProtocolError("bad-type", '"History" must be an object like {"Before": 100}')
    before = value.get("Before")
    limit = value.get("Limit", HISTORY_DEFAULT_LIMIT)
    around = value.get("Around")
    if before is not None and (type(before) is not int or before < 0):
        raise ProtocolError("bad-type", '"Before" must be a message ID')
    if around is not None and (type(around) is not int or around < 0 or before is not None):
        raise ProtocolError("bad-type", '"Around" must be a message ID, without "Before"')
    if type(limit) is not int or limit < 1:
        raise ProtocolError("bad-type", '"Limit" must be a positive integer')
    return HistoryRequest(before=before, limit=min(limit, HISTORY_MAX_LIMIT), around=around)


def _search(value: Any) -> SearchFrame:
    if not isinstance(value, dict):
        raise ProtocolError("bad-type", '"Search" must be an object like {"Query": "cafe"}')
    query = value.get("Query")
    before = value.get("Before")
    limit = value.get("Limit", SEARCH_DEFAULT_LIMIT)
    if not isinstance(query, str) or len(query) > SEARCH_MAX_QUERY:
        raise ProtocolError(
            "bad-type", f'"Query" must be a string of at most {SEARCH_MAX_QUERY} characters'
        )
    if before is not None and (type(before) is not int or before < 0):
        raise ProtocolError("bad-type", '"Before" must be a message ID')
    if type(limit) is not int or limit < 1:
        raise ProtocolError("bad-type", '"Limit" must be a positive integer')
    return SearchFrame(query=query, limit=min(limit, SEARCH_MAX_LIMIT), before=before)


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


# --- server frames -------------------------------------------------------------------------


def encode(frame: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, keys in insertion order, non-ASCII as-is."""
    return orjson.dumps(frame)


@functools.lru_cache(maxsize=8)  # a commit's messages share one timestamp
def format_sent(when: datetime) -> str:
    """The ``Sent`` field: ``YYYY-MM-DD HH:MM:SS`` in UTC, as the original's ``$ZDATETIME(,3)``."""
    return when.strftime("%Y-%m-%d %H:%M:%S")


def chat_frame(
    fields: dict[str, Any],
    *,
    author: str,
    msg_id: int,
    room: str,
    sent_at: datetime,
    edited_at: datetime | None = None,
    deleted_at: datetime | None = None,
) -> dict[str, Any]:
    """The Chat frame every socket of the room receives for a stored message.

    The client's keys keep their order and values (``Message`` untouched); ``Author`` is the
    server-set alias; ``Type``, ``Sent``, ``ID`` and ``Room`` are set, in place if the client
    sent them (as IRIS did for ``Type`` and ``Sent``). An edited message (in a backlog or a
    ``History`` answer) says since when (``Edited``); a deleted one is a tombstone: its ID,
    room, author and times, ``Deleted``, and no ``Message``.
    """
    frame = {} if deleted_at is not None else dict(fields)
    frame["Author"] = author
    frame["Type"] = "Chat"
    frame["Sent"] = format_sent(sent_at)
    frame["ID"] = msg_id
    frame["Room"] = room
    if deleted_at is not None:
        frame["Deleted"] = format_sent(deleted_at)
    elif edited_at is not None:
        frame["Edited"] = format_sent(edited_at)
    return frame


def edit_frame(
    fields: dict[str, Any], *, msg_id: int, target: int, author: str, room: str, sent_at: datetime
) -> dict[str, Any]:
    """The event "message ``target`` now says ``Message``" (the stored Edit frame's body).

    When the target was deleted later, the edit's text is erased too: the frame then says
    ``Deleted`` instead of carrying a ``Message``.
    """
    body = fields.get("Edit", {}).get("Message") if isinstance(fields.get("Edit"), dict) else None
    frame: dict[str, Any] = {"Type": "Edit", "ID": msg_id, "Target": target}
    if isinstance(body, str):
        frame["Message"] = body
    else:
        frame["Deleted"] = True
    frame.update(Author=author, Sent=format_sent(sent_at), Room=room)
    return frame


def delete_frame(
    fields: dict[str, Any], *, msg_id: int, target: int, author: str, room: str, sent_at: datetime
) -> dict[str, Any]:
    """The event "message ``target`` was deleted" (``Reason`` when a moderator redacted it)."""
    frame: dict[str, Any] = {"Type": "Delete", "ID": msg_id, "Target": target}
    frame.update(Author=author, Sent=format_sent(sent_at), Room=room)
    reason = fields.get("Reason")
    if isinstance(reason, str) and reason:
        frame["Reason"] = reason
    return frame


def status_frame(ws_id: str, *, head: int, epoch: str) -> dict[str, Any]:
    """The first frame a new connection receives."""
    return {
        "Type": "Status",
        "Message": STATUS_MESSAGE,
        "WSID": ws_id,
        "Head": head,
        "Epoch": epoch,
    }


def userlist_frame(aliases: list[str]) -> dict[str, Any]:
    """The room's online users, one entry per live connection with an alias, in join order."""
    return {"Type": "userlist", "Users": [{"User": name} for name in aliases]}


def error_frame(code: str, message: str) -> dict[str, Any]:
    """A refused frame, told to the client that sent it."""
    return {"Type": "Error", "Code": code, "Error": message}


def resumed_frame(
    *,
    start: int,
    head: int,
    epoch: str,
    complete: bool,
    reason: str | None = None,
    limit: int | None = None,
    epoch_changed: bool = False,
) -> dict[str, Any]:
    """The marker after a resume's backlog: which IDs it covered and whether that is all.

    ``reason`` is ``"retention"`` (older rows were deleted) or ``"limit"`` (more than
    ``limit`` were missed: page back with ``History``, nothing was sent; the frame then says
    ``Limit``).
    """
    frame: dict[str, Any] = {"Type": "Resumed", "From": start + 1, "To": head}
    if reason == "limit":
        frame.update(Complete=False, Reason="limit", Limit=limit)
    else:
        frame["Complete"] = complete
        if reason is not None:
            frame["Reason"] = reason
    frame["Epoch"] = epoch
    if epoch_changed:
        frame["EpochChanged"] = True
    return frame


def history_frame(messages: list[dict[str, Any]], *, more: bool, floor: int) -> dict[str, Any]:
    """A ``History`` answer: Chat frames oldest first, and whether older ones exist (``more``)
    or were deleted by retention (``floor``, the newest deleted ID, 0 for none)."""
    frame: dict[str, Any] = {"Type": "History", "Messages": messages}
    if more:
        frame["Complete"] = False
    elif floor:
        frame.update(Complete=False, Reason="retention", From=floor + 1)
    else:
        frame["Complete"] = True
    return frame


def around_frame(messages: list[dict[str, Any]], *, around: int, complete: bool) -> dict[str, Any]:
    """A ``History`` answer to ``Around``: Chat frames oldest first around that ID;
    ``complete`` when they run from the room's first message to its newest."""
    return {"Type": "History", "Around": around, "Messages": messages, "Complete": complete}


def search_frame(query: str, messages: list[dict[str, Any]], *, complete: bool) -> dict[str, Any]:
    """A ``Search`` answer: matching Chat frames newest first, each with its ``Snippet``
    (segments: plain, matched, plain...); ``complete`` when no older match is left."""
    return {"Type": "Search", "Query": query, "Messages": messages, "Complete": complete}
