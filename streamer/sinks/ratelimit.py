"""Token buckets: how the server bounds what one client, or one address, may cost it.

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; each request takes one.
Both classes are O(1) per call and take their clock as a parameter, so that tests can drive them.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    """``take()`` is True while the client is within ``rate`` per second (bursts up to ``burst``)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self) -> bool:
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def full(self) -> bool:
        self._refill()
        return self._tokens >= self.burst

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now


class AddressBuckets:
    """One bucket per client address, at most ``max_addresses`` of them (memory stays bounded
    however many addresses an attacker uses: the least recently used bucket goes first)."""

    def __init__(
        self, rate: float, burst: float, max_addresses: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.max_addresses = rate, burst, max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, address: str) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, self._clock)
            if len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(address)
        return bucket.take()

    def __len__(self) -> int:
        return len(self._buckets)


def address_key(peer: object) -> str:
    """The address a limit applies to: the IP (an IPv4-mapped IPv6 address as IPv4), and for
    IPv6 its /64, which one host or home network gets whole."""
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return str(host)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)
