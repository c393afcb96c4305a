"""TokenBucket: bursts pass, floods are refused, tokens come back over time."""

from __future__ import annotations

from signoff.core.ratelimit import KeyedLimiter, TokenBucket


def test_burst_passes_then_refuses() -> None:
    bucket = TokenBucket(rate=1.0, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(5)] == [True] * 5
    assert bucket.take(0.0) is False
    assert bucket.take(0.5) is False


def test_tokens_refill_at_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    for _ in range(3):
        assert bucket.take(0.0)
    assert not bucket.take(0.0)
    assert bucket.take(0.5)  # 0.5 s at 2 per second: one token
    assert not bucket.take(0.5)
    assert bucket.take(1.5)
    assert bucket.take(1.5)
    assert not bucket.take(1.5)


def test_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    results = [bucket.take(1000.0) for _ in range(3)]
    assert results == [True, True, False]


def test_refused_take_does_not_spend() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=0.0)
    assert bucket.take(0.0)
    for step in range(9):
        assert not bucket.take(step * 0.1)
    assert bucket.take(1.0)


def test_steady_rate_is_sustained() -> None:
    bucket = TokenBucket(rate=4.0, burst=1, now=0.0)
    assert all(bucket.take(i * 0.25) for i in range(1, 41))


def test_faster_than_rate_is_refused_after_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=3, now=0.0)
    taken = sum(bucket.take(i * 0.1) for i in range(100))  # 10 s at 10 per second
    assert taken == 3 + 9  # the burst, then one per whole second of the 9.9 s elapsed


def test_keyed_limits_count_each_key_apart() -> None:
    limiter = KeyedLimiter(rate=1 / 60, burst=2, size=3)
    assert limiter.take("lena", 0.0) and limiter.take("lena", 0.0)
    assert not limiter.take("lena", 1.0)
    assert limiter.take("omar", 1.0)
    assert limiter.take("lena", 61.0)  # refilled


def test_keyed_limits_keep_only_the_most_recent_keys() -> None:
    limiter = KeyedLimiter(rate=1 / 60, burst=1, size=2)
    assert limiter.take("a", 0.0)
    assert not limiter.take("a", 0.0)
    limiter.take("b", 0.0)
    limiter.take("c", 0.0)  # "a" is the least recent: dropped, so it starts afresh
    assert limiter.take("a", 0.0)
