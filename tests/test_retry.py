"""Backoff delays and the adaptive rate limiter (cdp_tiktok.delivery.retry)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp_tiktok.delivery.retry import AdaptiveRate, Backoff, RatePolicy, RetryPolicy


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@given(
    seed=st.integers(0, 2**32),
    attempt=st.integers(1, 200),
    base=st.floats(0.0, 10.0),
    cap=st.floats(0.0, 600.0),
)
def test_full_jitter_stays_within_zero_and_the_capped_exponential(
    seed: int, attempt: int, base: float, cap: float
) -> None:
    backoff = Backoff(RetryPolicy(base_delay=base, max_delay=cap), random.Random(seed))
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert backoff.ceiling(attempt) == pytest.approx(ceiling)
    for _ in range(5):
        assert 0.0 <= backoff.delay(attempt) <= ceiling + 1e-9


def test_ceiling_doubles_then_caps() -> None:
    backoff = Backoff(RetryPolicy(base_delay=0.5, max_delay=60.0))
    assert [backoff.ceiling(n) for n in range(1, 10)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0
    ]  # fmt: skip


def test_full_jitter_uses_the_whole_range() -> None:
    backoff = Backoff(RetryPolicy(base_delay=1.0, max_delay=8.0), random.Random(7))
    delays = [backoff.delay(4) for _ in range(2000)]
    assert min(delays) < 0.5 and max(delays) > 7.5  # not "equal jitter", not fixed


def test_same_seed_same_delays() -> None:
    first = Backoff(rng=random.Random(42))
    second = Backoff(rng=random.Random(42))
    assert [first.delay(n) for n in range(1, 12)] == [second.delay(n) for n in range(1, 12)]


@given(
    seed=st.integers(0, 2**32),
    attempt=st.integers(1, 30),
    retry_after=st.floats(0.001, 10_000.0),
)
def test_retry_after_is_honoured_and_capped(seed: int, attempt: int, retry_after: float) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0, max_retry_after=120.0)
    delay = Backoff(policy, random.Random(seed)).delay(attempt, retry_after)
    assert delay >= min(retry_after, 120.0) - 1e-9
    assert delay <= max(30.0, 120.0)


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)
    with pytest.raises(ValueError):
        RetryPolicy(unknown_code_attempts=0)
    with pytest.raises(ValueError):
        RatePolicy(floor=0)
    with pytest.raises(ValueError):
        RatePolicy(decrease=1.0)


def test_rate_goes_down_on_throttle_once_per_cooldown_and_recovers() -> None:
    clock = FakeClock()
    policy = RatePolicy(ceiling=100.0, floor=5.0, decrease=0.5, increase=2.0, cooldown=1.0)
    limiter = AdaptiveRate(policy, clock=clock)
    assert limiter.rate == 100.0
    limiter.throttled()
    assert limiter.rate == 50.0
    limiter.throttled()  # same burst: ignored within the cooldown
    assert limiter.rate == 50.0
    clock.advance(1.0)
    limiter.throttled()
    assert limiter.rate == 25.0
    for _ in range(5):
        limiter.succeeded()
    assert limiter.rate == 35.0  # additive increase
    for _ in range(100):
        limiter.succeeded()
    assert limiter.rate == 100.0  # never above the ceiling
    for _ in range(20):
        clock.advance(1.0)
        limiter.throttled()
    assert limiter.rate == 5.0  # never below the floor


def test_token_bucket_spaces_requests_at_the_allowed_rate() -> None:
    clock = FakeClock()
    policy = RatePolicy(ceiling=10.0, floor=1.0, burst_seconds=0.25)
    limiter = AdaptiveRate(policy, clock=clock)
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == 0.0  # capacity 2.5 tokens
    wait = limiter.acquire()
    assert wait == pytest.approx(0.05)  # half a token missing at 10 per second
    clock.advance(wait)
    assert limiter.acquire() == 0.0
    assert limiter.acquire() > 0.0


@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("advance"), st.floats(0.0, 2.0)),
            st.tuples(st.just("throttled"), st.just(0.0)),
            st.tuples(st.just("succeeded"), st.just(0.0)),
            st.tuples(st.just("acquire"), st.just(0.0)),
        ),
        max_size=200,
    )
)
def test_rate_stays_within_bounds_and_grants_respect_it(steps: list[tuple[str, float]]) -> None:
    clock = FakeClock()
    policy = RatePolicy(ceiling=50.0, floor=2.0, increase=3.0, cooldown=0.5, burst_seconds=0.2)
    limiter = AdaptiveRate(policy, clock=clock)
    start = clock.now
    granted = 0
    for action, value in steps:
        if action == "advance":
            clock.advance(value)
        elif action == "throttled":
            limiter.throttled()
        elif action == "succeeded":
            limiter.succeeded()
        elif limiter.acquire() == 0.0:
            granted += 1
        assert policy.floor <= limiter.rate <= policy.ceiling
    # never more than the ceiling rate over the elapsed time plus one full bucket
    assert granted <= policy.ceiling * (clock.now - start) + policy.ceiling * policy.burst_seconds
