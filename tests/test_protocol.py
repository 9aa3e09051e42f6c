"""The pure protocol core, tested without sockets."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from chatlog import protocol
from chatlog.protocol import Alias, Chat, HistoryRequest, ProtocolError, parse_client_frame
from tests.wsclients import b64


def refused(text: str) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(text)
    return info.value.code


def test_routes_by_key_not_substring() -> None:
    """`User` inside a chat frame's values or other keys does not make it a rename."""
    frame = parse_client_frame(json.dumps({"Message": b64("User!"), "Author": "SuperUser"}))
    assert isinstance(frame, Chat) and frame.text == "User!"
    assert parse_client_frame('{"User": "  bob  "}') == Alias("bob")
    assert parse_client_frame('{"History": {"Before": 9}}') == HistoryRequest(9, 50)


def test_latin1_fallback_and_strict_base64() -> None:
    """Bodies decode as UTF-8, else as Latin-1 (btoa); base64 must be strict."""
    assert protocol.decode_body(b64("naïve ☃")) == "naïve ☃"
    assert protocol.decode_body(b64("café", "latin-1")) == "café"
    assert refused('{"Message": "aGk=\\n"}') == "invalid-base64"
    assert refused('{"Message": "YQ"}') == "invalid-base64"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"Message": "aGk=", "Message": "aGk="}', "duplicate-key"),
        ('{"Message": "aGk=", "X": NaN}', "invalid-number"),
        ('{"Message": "aGk=", "X": -Infinity}', "invalid-number"),
        ('{"Message": "aGk=", "X": 1e999}', "invalid-number"),
        ('{"Message": "aGk=", "X": 123456789012345678901234567890}', "invalid-number"),
        ('{"Message": "aGk=", "X": ' + "[" * 40 + "]" * 40 + "}", "too-deep"),
        ("[" * 100_000, "too-deep"),
        ('{"Message": "aGk=", "X": "\\ud800"}', "invalid-text"),
        (json.dumps({"Message": b64("a\x00b")}), "invalid-text"),
        (json.dumps({"Message": b64("bell\x07")}), "invalid-text"),
        ('{"User": "bad\\u0000name"}', "invalid-text"),
        ('{"Message": "aGk=", "X": ["a\\u0000b"]}', "invalid-text"),
        ('{"Message": "aGk=", "Nonce": ""}', "bad-type"),
        ('{"History": {"Limit": 0}}', "bad-type"),
        ('{"History": {"Before": true}}', "bad-type"),
    ],
)
def test_refusals(text: str, code: str) -> None:
    """Each malformed frame is refused with its documented code."""
    assert refused(text) == code


def test_tabs_and_newlines_are_text() -> None:
    """Tab, CR and LF are allowed in a message; they are ordinary text."""
    assert protocol.decode_body(b64("a\tb\r\nc")) == "a\tb\r\nc"


def test_chat_frame_keeps_client_order_and_overwrites_in_place() -> None:
    """Client keys keep their order; Type/Sent set in place, Author forced to the alias."""
    fields = {"Type": "Fake", "Message": "aGk=", "Author": "admin", "Extra": 1}
    frame = protocol.chat_frame(
        fields, author="bob", msg_id=7, room="main", sent_at=datetime(2026, 1, 2, 3, 4, 5, 678)
    )
    assert protocol.encode(frame) == (
        b'{"Type":"Chat","Message":"aGk=","Author":"bob","Extra":1,'
        b'"Sent":"2026-01-02 03:04:05","ID":7,"Room":"main"}'
    )
    assert fields["Author"] == "admin", "the parsed frame is not mutated"


def test_history_limit_is_capped() -> None:
    """A History request cannot ask for more than the cap."""
    frame = parse_client_frame('{"History": {"Limit": 100000}}')
    assert frame == HistoryRequest(None, protocol.HISTORY_MAX_LIMIT)


def test_escaped_backslash_is_not_an_escape() -> None:
    """A literal backslash-u in a relayed value is text, not a NUL or a surrogate."""
    frame = parse_client_frame('{"Message": "aGk=", "X": "\\\\u0000 and \\\\ud800"}')
    assert isinstance(frame, Chat) and frame.fields["X"] == "\\u0000 and \\ud800"
