"""Limits that outlive a connection: frame rates per network and per token user, new
connections per network, and the network an address counts in.

A client that reconnects gets a fresh per-connection bucket (:class:`.limits.RateLimiter`),
but not a fresh share of these: they are kept by key (``net:203.0.113.0/24``, ``user:alice``)
for as long as the key was used recently, in a table bounded in entries. Addresses count per
network (IPv4 /24 and IPv6 /64 by default; ``--ipv4-prefix`` / ``--ipv6-prefix``), so
127.0.0.2..8, or one host's many IPv6 addresses, are one network. Pure bookkeeping with an
injectable clock, no I/O.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from typing import Final

from chatlog.server.limits import Clock, TokenBucket

#: Most keys a :class:`Buckets` table keeps; the least recently used go first.
MAX_KEYS: Final = 65_536


def network(address: str, ipv4_prefix: int = 24, ipv6_prefix: int = 64) -> str:
    """The network ``address`` counts in (``203.0.113.0/24``); a non-IP address as is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class Buckets:
    """Token buckets by key, surviving the connections that use them; ``rate <= 0``: no limit."""

    def __init__(
        self, rate: float, burst: int, *, max_keys: int = MAX_KEYS, clock: Clock = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> bool:
        """Take one token from ``key``'s bucket; ``False`` when it is empty."""
        if self.rate <= 0:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take()


class Quotas:
    """The shared limits of one server: frames per network and per user, handshakes per
    network."""

    def __init__(
        self,
        *,
        frame_rate: float,
        frame_burst: int,
        connect_rate: float,
        connect_burst: int,
        ipv4_prefix: int = 24,
        ipv6_prefix: int = 64,
        clock: Clock = time.monotonic,
    ) -> None:
        self.frames = Buckets(frame_rate, frame_burst, clock=clock)
        self.connects = Buckets(connect_rate, connect_burst, clock=clock)
        self.ipv4_prefix = ipv4_prefix
        self.ipv6_prefix = ipv6_prefix

    def network(self, address: str) -> str:
        return network(address, self.ipv4_prefix, self.ipv6_prefix)

    def frame(self, net: str, user: str | None) -> bool:
        """Account one incoming frame (any kind, pings too) of a client of ``net``/``user``."""
        allowed = self.frames.take(f"net:{net}")
        if user is not None:
            allowed = self.frames.take(f"user:{user}") and allowed
        return allowed
