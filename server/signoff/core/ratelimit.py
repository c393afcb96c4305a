"""Token buckets, one per connection (or per card, for refused decision attempts): bursts
are fine, floods are refused."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class TokenBucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class KeyedLimiter:
    """One token bucket per key (a card, say), for at most ``size`` keys:
    the least recently used go first, so a flood of keys stays small."""

    def __init__(self, rate: float, burst: int, size: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.size = size
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def take(self, key: Hashable, now: float) -> bool:
        """Spend one of the key's tokens; False when it has none left."""
        bucket = self._buckets.pop(key, None) or TokenBucket(self.rate, self.burst, now)
        self._buckets[key] = bucket
        while len(self._buckets) > self.size:
            self._buckets.popitem(last=False)
        return bucket.take(now)
