"""Client frames: parsed and validated into small typed objects, routed by which key is
present (never by substring). Pure: no I/O."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

from chatlog.protocol.rules import (
    HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT,
    MAX_ALIAS_CHARS,
    MAX_NONCE_CHARS,
    SEARCH_DEFAULT_LIMIT,
    SEARCH_MAX_LIMIT,
    SEARCH_MAX_QUERY,
    ProtocolError,
    check_string,
    decode_body,
    encode,
    loads,
    parse_alias,
)


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


def compose_chat(text: str, *, author: str, nonce: str | None = None) -> tuple[Chat, str]:
    """A message the server itself writes (``chatlog broadcast``, the HTTP API), as a client's
    Chat frame would be: the parsed :class:`Chat` and its raw JSON. Raises ProtocolError."""
    if not isinstance(text, str) or not text:
        raise ProtocolError("empty-message", "the message is empty")
    check_string(text)
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
