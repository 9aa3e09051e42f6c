"""What the log's read path shares that needs no SQLAlchemy: the names of the message columns,
the stored time format and the error for a log that cannot be used.

``chatlog replay`` and ``chatlog sql`` on a SQLite file read through
:mod:`chatlog.log.sqlite.lite` and import only this, not the tables of
:mod:`chatlog.log.schema` (``tests/test_startup.py`` checks the two agree).
"""

from __future__ import annotations

from typing import Final

from chatlog.settings import SettingsError

#: How a timestamp is stored on SQLite (what SQLAlchemy's DATETIME writes and reads back), and
#: how JSON output prints one on either backend: UTC, microseconds, no zone.
STORED_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S.%f"

#: Every column of ``messages``, in table order (the keys of an exported row).
COLUMNS: Final = (
    "id",
    "room",
    "ws_id",
    "author",
    "message",
    "text",
    "raw",
    "sent_at",
    "nonce",
    "kind",
    "target_id",
    "edited_at",
    "deleted_at",
)


class LogUnavailable(SettingsError):
    """The log cannot be opened or used as asked; the message says why and what to do."""
