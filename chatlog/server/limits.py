"""Rate and connection limits: a token bucket per connection, caps on concurrent sockets.

Pure bookkeeping with an injectable clock, no I/O, so every rule is tested without sockets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from typing import Final

Clock = Callable[[], float]

#: Refused frames within :data:`FLOOD_WINDOW` seconds after which a client is closed (1008).
FLOOD_REFUSALS: Final = 100
FLOOD_WINDOW: Final = 10.0


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; each frame takes one. ``rate <= 0``: no limit."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._stamp = clock()

    def take(self) -> bool:
        """Take one token; ``False`` when the bucket is empty (the frame is over the limit)."""
        if self.rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class Verdict(Enum):
    """What to do with one incoming frame."""

    ACCEPT = "accept"
    #: Over the rate: answer with a ``rate-limited`` Error frame, store nothing.
    REFUSE = "refuse"
    #: Still flooding after many refusals: close the connection with 1008.
    CLOSE = "close"


class RateLimiter:
    """The per-connection limit: a :class:`TokenBucket` plus a count of recent refusals."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        flood_refusals: int = FLOOD_REFUSALS,
        flood_window: float = FLOOD_WINDOW,
        clock: Clock = time.monotonic,
        shared: Callable[[], bool] | None = None,
    ) -> None:
        self.bucket = TokenBucket(rate, burst, clock)
        #: The limits the connection shares with others of its network and user (quotas).
        self._shared = shared
        self._clock = clock
        self._flood_refusals = flood_refusals
        self._flood_window = flood_window
        self._window_start = 0.0
        self.refusals = 0

    def check(self) -> Verdict:
        """Account for one incoming frame."""
        own = self.bucket.take()
        if own and (self._shared is None or self._shared()):
            return Verdict.ACCEPT
        now = self._clock()
        if now - self._window_start > self._flood_window:
            self._window_start, self.refusals = now, 0
        self.refusals += 1
        return Verdict.CLOSE if self.refusals >= self._flood_refusals else Verdict.REFUSE


class LimitExceeded(Exception):
    """A connection cap is reached; ``status`` is the HTTP answer (503 total, 429 per address)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ConnectionLimiter:
    """Counts open sockets in total and per remote address; ``0`` means no cap."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self.open = 0
        self._by_address: dict[str, int] = {}

    def acquire(self, address: str) -> None:
        """Count one more socket from ``address`` or raise :class:`LimitExceeded`."""
        if self.total and self.open >= self.total:
            raise LimitExceeded(503, f"the server is at its limit of {self.total} connections")
        held = self._by_address.get(address, 0)
        if self.per_address and held >= self.per_address:
            raise LimitExceeded(
                429, f"this network ({address}) is at its limit of {self.per_address} connections"
            )
        self.open += 1
        self._by_address[address] = held + 1

    def release(self, address: str) -> None:
        """Forget one socket from ``address``."""
        self.open = max(0, self.open - 1)
        left = self._by_address.get(address, 0) - 1
        if left > 0:
            self._by_address[address] = left
        else:
            self._by_address.pop(address, None)

    def count(self, address: str) -> int:
        return self._by_address.get(address, 0)
