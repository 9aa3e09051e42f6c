"""Server frames: every frame the server sends, built in one place, and their encoding.
Pure: no I/O."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from chatlog.protocol.rules import STATUS_MESSAGE


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
