"""The Edit and Delete frames in the pure protocol core, tested without sockets."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from chatlog.log.model import StoredMessage
from chatlog.protocol import DeleteRequest, EditRequest, ProtocolError, parse_client_frame
from tests.wsclients import b64

WHEN = datetime(2026, 12, 3, 11, 0, 5, 123456)


def test_edit_and_delete_parse() -> None:
    """Edit carries the target and the decoded new text; Delete the target only."""
    frame = parse_client_frame(json.dumps({"Edit": {"ID": 7, "Message": b64("naïve")}}))
    assert frame == EditRequest(7, b64("naïve"), "naïve")
    assert parse_client_frame('{"Delete": {"ID": 7}}') == DeleteRequest(7)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"Edit": 7}, "bad-type"),
        ({"Edit": {"Message": b64("x")}}, "bad-type"),
        ({"Edit": {"ID": 0, "Message": b64("x")}}, "bad-type"),
        ({"Edit": {"ID": True, "Message": b64("x")}}, "bad-type"),
        ({"Edit": {"ID": 7}}, "bad-type"),
        ({"Edit": {"ID": 7, "Message": "%%"}}, "invalid-base64"),
        ({"Edit": {"ID": 7, "Message": ""}}, "empty-message"),
        ({"Edit": {"ID": 7, "Message": b64("bell\x07")}}, "invalid-text"),
        ({"Delete": {"ID": "7"}}, "bad-type"),
        ({"Delete": [7]}, "bad-type"),
        ({"Delete": {"ID": 7}, "Message": b64("x")}, "ambiguous-frame"),
        ({"Edit": {"ID": 7, "Message": b64("x")}, "Delete": {"ID": 7}}, "ambiguous-frame"),
    ],
)
def test_bad_edit_and_delete_frames(frame: dict[str, object], code: str) -> None:
    """A malformed Edit or Delete is refused with the body codes messages use."""
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(json.dumps(frame))
    assert info.value.code == code


def row(**changes: object) -> StoredMessage:
    fields = {"Message": b64("hi"), "Author": "x", "Nonce": "n1"}
    return StoredMessage(5, "main", "w", "ann", fields, WHEN, **changes)  # type: ignore[arg-type]


def test_frames_of_rows_in_their_current_state() -> None:
    """A chat row is a Chat frame (Edited when edited, a tombstone without Message when
    deleted); event rows are Edit and Delete frames naming their target."""
    assert row().frame() == {
        "Message": b64("hi"),
        "Author": "ann",
        "Nonce": "n1",
        "Type": "Chat",
        "Sent": "2026-12-03 11:00:05",
        "ID": 5,
        "Room": "main",
    }
    assert row(edited_at=WHEN).frame()["Edited"] == "2026-12-03 11:00:05"
    assert row(deleted_at=WHEN).frame() == {
        "Author": "ann",
        "Type": "Chat",
        "Sent": "2026-12-03 11:00:05",
        "ID": 5,
        "Room": "main",
        "Deleted": "2026-12-03 11:00:05",
    }
    edit = StoredMessage(
        9,
        "main",
        "w",
        "ann",
        {"Edit": {"ID": 5, "Message": b64("ho")}},
        WHEN,
        kind="edit",
        target=5,
    )
    assert edit.frame() == {
        "Type": "Edit",
        "ID": 9,
        "Target": 5,
        "Message": b64("ho"),
        "Author": "ann",
        "Sent": "2026-12-03 11:00:05",
        "Room": "main",
    }
    erased = StoredMessage(9, "main", "w", "ann", {"Edit": {"ID": 5}}, WHEN, kind="edit", target=5)
    assert "Message" not in erased.frame() and erased.frame()["Deleted"] is True
    gone = StoredMessage(
        10, "main", "cli", "system", {"Delete": {"ID": 5}, "Reason": "spam"}, WHEN,
        kind="delete", target=5,
    )  # fmt: skip
    assert gone.frame() == {
        "Type": "Delete",
        "ID": 10,
        "Target": 5,
        "Author": "system",
        "Sent": "2026-12-03 11:00:05",
        "Room": "main",
        "Reason": "spam",
    }
