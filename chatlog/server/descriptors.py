"""File descriptors: the connection cap below them, and accept errors logged once a while.

Every socket is a descriptor, and so are the database files, the listener and the event
loop's own. At start-up ``serve`` raises the soft ``RLIMIT_NOFILE`` to the hard limit
(:func:`raise_nofile`) and caps ``--max-connections`` at what is left after
:func:`reserve` (:func:`connection_cap`), so a crowd gets a clean 503 from the guard before
``accept()`` can fail. When it fails anyway (other processes, a lower cap from outside),
asyncio logs a traceback per attempt; :class:`AcceptErrorLog` turns that into one line per
:data:`ACCEPT_LOG_EVERY` seconds with a count.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any, Final

log = logging.getLogger(__name__)

#: Seconds between two log lines about failing ``accept()`` calls.
ACCEPT_LOG_EVERY: Final = 10.0


def raise_nofile() -> int:
    """Raise the soft descriptor limit to the hard one (where allowed); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def reserve(nofile: int) -> int:
    """Descriptors kept for the database, the listener, logs and the loop: 10 %, at least 100
    (measured: an idle server holds 16, and its SQLite pool up to 15 connections of 3 each)."""
    return max(100, nofile // 10)


def connection_cap(configured: int, nofile: int) -> int:
    """``--max-connections`` (0: no cap) lowered to fit under ``nofile`` descriptors."""
    room = max(1, nofile - reserve(nofile))
    return room if configured == 0 or configured > room else configured


class AcceptErrorLog:
    """A loop exception handler that logs failing ``accept()`` calls once per interval."""

    def __init__(self, every: float = ACCEPT_LOG_EVERY, clock: Any = time.monotonic) -> None:
        self.every = every
        self._clock = clock
        self._last = -every
        #: Failures since the last line, and in all.
        self.pending = 0
        self.total = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message", ""))
        if not ("accept" in message.lower() and isinstance(exc, OSError)):
            loop.default_exception_handler(context)
            return
        self.pending += 1
        self.total += 1
        now = self._clock()
        if now - self._last >= self.every:
            log.error(
                "accept() failed %d time(s) in the last %.0f s: %s (new connections wait; "
                "see --max-connections)",
                self.pending,
                self.every,
                exc.strerror or exc,
            )
            self._last, self.pending = now, 0
