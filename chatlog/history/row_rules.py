"""What ``chatlog import`` checks in each row beyond its shape: the rules the server applies
to a live frame, so an imported log holds nothing the server would have refused.

* ``id`` at most :data:`MAX_IMPORT_ID` (2^53 - 1): exact in the chat page's JavaScript numbers,
  and leaves the log room to number new messages (an ID of 2^63 - 1 would make every later
  message fail with ``store-failed``).
* ``raw`` at most ``--max-message-bytes`` (UTF-8) and a frame the server accepts
  (:func:`chatlog.protocol.parse_client_frame`: strict base64, no control characters in the
  text, no empty message): a chat row's a chat frame, an edit event's its ``Edit`` and a
  deletion's its ``Delete`` of ``target_id``; ``message`` is its ``Message`` and ``text`` its
  decoded text. A deleted row (a tombstone, an erased edit event) holds neither.
* ``room``, ``author``, ``ws_id`` and ``nonce``: printable, no surrounding spaces, within the
  server's lengths (the schema's column widths).
"""

from __future__ import annotations

from typing import Any, Final

from chatlog import protocol

#: The highest ID an import may carry.
MAX_IMPORT_ID: Final = 2**53 - 1


#: The longest line read at all, for a ``--max-message-bytes`` of ``n``: ``raw``, ``message``
#: and ``text`` are each at most ``n`` bytes, JSON escapes at most 6x (``\\u0000``), plus keys.
def max_line_bytes(max_message_bytes: int) -> int:
    return 18 * max_message_bytes + 4096


def content_error(obj: dict[str, Any], max_message_bytes: int) -> str | None:
    """Why a row (shape already checked) would not have been stored by the server, or None."""
    if obj["id"] > MAX_IMPORT_ID:
        return f"id {obj['id']} is above {MAX_IMPORT_ID}, the highest ID an import may carry"
    for column in ("room", "author", "ws_id", "nonce"):
        value = obj[column]
        if value is not None and (not value.isprintable() or value != value.strip()):
            return f"{column} {value[:80]!r} holds control characters or surrounding spaces"
    size = len(obj["raw"].encode("utf-8", "surrogatepass"))
    if size > max_message_bytes:
        return f"raw is {size} bytes, above --max-message-bytes {max_message_bytes}"
    if obj.get("deleted_at") is not None:
        # A tombstone, or an erased edit event: the text is gone, only the frame's shell stays.
        if obj["message"] or obj["text"]:
            return "a deleted row holds no message or text"
        return None
    try:
        frame = protocol.parse_client_frame(obj["raw"])
    except protocol.ProtocolError as exc:
        return f"raw is not a frame the server accepts ({exc.code}: {exc.message})"
    kind = obj.get("kind", "chat")
    if kind == "chat" and not isinstance(frame, protocol.Chat):
        return "raw is not a chat frame (it has no Message)"
    if kind == "edit" and not (
        isinstance(frame, protocol.EditRequest) and frame.target == obj["target_id"]
    ):
        return "raw is not the Edit frame of this event's target_id"
    if kind == "delete":
        if not (isinstance(frame, protocol.DeleteRequest) and frame.target == obj["target_id"]):
            return "raw is not the Delete frame of this event's target_id"
        return None if not (obj["message"] or obj["text"]) else "a deletion holds no text"
    assert isinstance(frame, protocol.Chat | protocol.EditRequest)
    if obj["message"] != frame.body:
        return "message is not the Message of raw"
    if obj["text"] != frame.text:
        return "text is not the decoded Message of raw"
    return None
