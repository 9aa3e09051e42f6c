"""``chatlog sql -p NAME[:TYPE] VALUE``: parameters are text unless a type is given.

The same value binds the same way on every backend: ``-p n 007`` is the text ``'007'``, and
``-p n:int 7``, ``-p x:float 0.5``, ``-p day:date 2026-12-02`` and
``-p t:datetime 2026-12-02T10:00`` (ISO-8601, UTC unless a zone is given, or ``-2h`` and
``now`` as for ``replay --since``) are typed. Dates and times are handed to the reader's
:meth:`~chatlog.log.readonly.ReadOnly.bind_time`, which binds them the way its database
compares them with ``sent_at``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Final

from chatlog.history.replay import SelectionError, parse_time


class BadParam(SelectionError):
    """A ``-p`` that cannot be bound; the message says which and how to write it."""


def _int(text: str) -> int:
    if not re.fullmatch(r"\s*[+-]?\d+\s*", text):
        raise ValueError
    return int(text)


def _datetime(text: str) -> datetime:
    try:
        return parse_time(text)
    except SelectionError:
        raise ValueError from None


TYPES: Final[dict[str, Callable[[str], Any]]] = {
    "str": str,
    "int": _int,
    "float": float,
    "date": date.fromisoformat,
    "datetime": _datetime,
}
_EXAMPLES: Final = {
    "int": "42",
    "float": "0.5",
    "date": "2026-12-02",
    "datetime": "2026-12-02T10:00 or -2h",
}


def parse_param(spec: str, value: str) -> tuple[str, Any]:
    """``(name, value)`` for ``-p SPEC VALUE``, where SPEC is ``NAME`` or ``NAME:TYPE``."""
    name, _, kind = spec.partition(":")
    kind = kind or "str"
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise BadParam(f"-p {spec!r}: the name must be a word, as in :room (then -p room lobby)")
    if kind not in TYPES:
        raise BadParam(f"-p {spec!r}: unknown type {kind!r}; use one of {', '.join(TYPES)}")
    try:
        return name, TYPES[kind](value)
    except ValueError:
        article = "an" if kind[0] in "aeiou" else "a"
        raise BadParam(
            f"-p {spec} {value!r} is not {article} {kind}; "
            f"write it like -p {name}:{kind} {_EXAMPLES[kind]}"
        ) from None


def bindable(value: Any, bind_time: Callable[[date], Any]) -> Any:
    """``value`` as the reader binds it: dates and times through its ``bind_time``."""
    return bind_time(value) if isinstance(value, date) else value
