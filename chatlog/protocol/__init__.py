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
server sends is named here. The package is three modules, re-exported here so that callers
write ``protocol.chat_frame``: :mod:`~chatlog.protocol.rules` (limits, close codes, strict
JSON, bodies, aliases, rooms, the handshake's query), :mod:`~chatlog.protocol.incoming`
(client frames) and :mod:`~chatlog.protocol.outgoing` (server frames).
"""

from __future__ import annotations

from chatlog.protocol.incoming import (
    Alias,
    Chat,
    ClientFrame,
    DeleteRequest,
    EditRequest,
    HistoryRequest,
    SearchFrame,
    compose_chat,
    parse_client_frame,
)
from chatlog.protocol.outgoing import (
    around_frame,
    chat_frame,
    delete_frame,
    edit_frame,
    error_frame,
    format_sent,
    history_frame,
    resumed_frame,
    search_frame,
    status_frame,
    userlist_frame,
)
from chatlog.protocol.rules import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY_VIOLATION,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA,
    DEFAULT_ROOM,
    HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT,
    MAX_ALIAS_CHARS,
    MAX_DEPTH,
    MAX_EPOCH_CHARS,
    MAX_NONCE_CHARS,
    MAX_ROOM_CHARS,
    SEARCH_DEFAULT_LIMIT,
    SEARCH_MAX_LIMIT,
    SEARCH_MAX_QUERY,
    STATUS_MESSAGE,
    SYSTEM_AUTHOR,
    ProtocolError,
    decode_body,
    encode,
    loads,
    parse_alias,
    parse_epoch,
    parse_room,
    parse_since,
)

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_TOO_BIG",
    "CLOSE_UNSUPPORTED_DATA",
    "DEFAULT_ROOM",
    "HISTORY_DEFAULT_LIMIT",
    "HISTORY_MAX_LIMIT",
    "MAX_ALIAS_CHARS",
    "MAX_DEPTH",
    "MAX_EPOCH_CHARS",
    "MAX_NONCE_CHARS",
    "MAX_ROOM_CHARS",
    "SEARCH_DEFAULT_LIMIT",
    "SEARCH_MAX_LIMIT",
    "SEARCH_MAX_QUERY",
    "STATUS_MESSAGE",
    "SYSTEM_AUTHOR",
    "Alias",
    "Chat",
    "ClientFrame",
    "DeleteRequest",
    "EditRequest",
    "HistoryRequest",
    "ProtocolError",
    "SearchFrame",
    "around_frame",
    "chat_frame",
    "compose_chat",
    "decode_body",
    "delete_frame",
    "edit_frame",
    "encode",
    "error_frame",
    "format_sent",
    "history_frame",
    "loads",
    "parse_alias",
    "parse_client_frame",
    "parse_epoch",
    "parse_room",
    "parse_since",
    "resumed_frame",
    "search_frame",
    "status_frame",
    "userlist_frame",
]
