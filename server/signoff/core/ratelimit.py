"""A token bucket, one per connection (or per name and address for logins): bursts are
fine, floods are refused."""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        if self.ready(now):
            self._tokens -= 1
            return True
        return False

    def ready(self, now: float) -> bool:
        """Whether ``take`` would succeed now, without taking."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return self._tokens >= 1
