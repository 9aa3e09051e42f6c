"""The event loop ``chatlog serve`` runs on: asyncio's own, or uvloop when asked for."""

from __future__ import annotations

import asyncio
import importlib

#: ``--event-loop`` choices.
EVENT_LOOPS = ("asyncio", "uvloop")


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A fresh loop of ``kind``; uvloop must be installed (``pip install uvloop``)."""
    if kind == "uvloop":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            raise RuntimeError(
                "--event-loop uvloop needs uvloop: pip install uvloop (or 'chatlog[uvloop]')"
            ) from None
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()
