"""When to try again and how fast to send: backoff delays and an adaptive rate limit.

Both classes are small, pure and deterministic given their inputs: the random source and
the clock are injected, so tests can pin them.

* :class:`Backoff` gives capped exponential backoff with *full jitter* (a delay drawn
  uniformly from ``[0, min(max_delay, base_delay * 2**(attempt - 1))]``), honouring a
  server's ``Retry-After`` (the larger of the two, capped by ``max_retry_after``).
* :class:`AdaptiveRate` is an AIMD token bucket: a throttled response multiplies the
  allowed request rate down, each success adds a little back, up to a ceiling.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The retry constants of a delivery run.

    ``base_delay`` and ``max_delay`` (seconds) shape the exponential backoff;
    ``max_retry_after`` caps how long a server's ``Retry-After`` may hold a batch back;
    ``unknown_code_attempts`` bounds how often an unknown TikTok error code is retried
    before its events are dead-lettered (settings' ``max_attempts`` bounds the rest).
    """

    base_delay: float = 0.5
    max_delay: float = 60.0
    max_retry_after: float = 300.0
    unknown_code_attempts: int = 5

    def __post_init__(self) -> None:
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("retry delays must not be negative")
        if self.unknown_code_attempts < 1:
            raise ValueError("unknown_code_attempts must be at least 1")


class Backoff:
    """Capped exponential backoff with full jitter.

    Guarantees: ``delay(attempt)`` lies in ``[0, min(max_delay, base_delay * 2**(attempt-1))]``
    without ``retry_after``; with it, the delay is at least ``min(retry_after,
    max_retry_after)`` and at most ``max(max_delay, max_retry_after)``. The same seeded
    ``rng`` gives the same sequence of delays.
    """

    __slots__ = ("_policy", "_rng")

    def __init__(self, policy: RetryPolicy | None = None, rng: random.Random | None = None) -> None:
        self._policy = policy or RetryPolicy()
        self._rng = rng or random.Random()

    @property
    def policy(self) -> RetryPolicy:
        """The constants this backoff applies."""
        return self._policy

    def ceiling(self, attempt: int) -> float:
        """The largest jittered delay for the ``attempt``-th attempt (1-based)."""
        exponent = min(max(attempt, 1) - 1, 1000)  # 2.0**1000 is still a finite float
        return min(self._policy.max_delay, self._policy.base_delay * 2.0**exponent)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the ``attempt``-th attempt (1-based) of a batch."""
        jittered = self._rng.uniform(0.0, self.ceiling(attempt))
        if retry_after is None or retry_after <= 0:
            return jittered
        return max(jittered, min(retry_after, self._policy.max_retry_after))


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """The constants of :class:`AdaptiveRate` (requests per second unless noted).

    ``ceiling`` defaults to TikTok's documented 1,000 QPS for ``/event/track/``;
    ``floor`` is the slowest the limiter will ever go. On a throttled response the rate is
    multiplied by ``decrease`` (at most once per ``cooldown`` seconds, so the in-flight
    requests of one burst count as one signal); every successful request adds
    ``increase`` back. The bucket holds at most ``burst_seconds`` worth of tokens (and at
    least one).
    """

    ceiling: float = 1000.0
    floor: float = 1.0
    decrease: float = 0.5
    increase: float = 1.0
    cooldown: float = 1.0
    burst_seconds: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.ceiling:
            raise ValueError("rate floor must be positive and not above the ceiling")
        if not 0 < self.decrease < 1:
            raise ValueError("rate decrease must be between 0 and 1 (exclusive)")
        if self.increase < 0 or self.cooldown < 0 or self.burst_seconds <= 0:
            raise ValueError("rate increase, cooldown and burst_seconds must be positive")


_EPSILON = 1e-9  # a token short by rounding only is a whole token


class AdaptiveRate:
    """An AIMD token bucket deciding when the next request of one destination may start.

    Guarantees: the rate stays within ``[policy.floor, policy.ceiling]``; ``acquire``
    never grants more than ``rate * elapsed + capacity`` requests over any period; after
    ``throttled()`` the rate is lower (unless already at the floor or within the
    cooldown of the previous decrease) and ``succeeded()`` raises it back gradually.
    Not thread-safe: one thread owns it.
    """

    __slots__ = ("_clock", "_last_decrease", "_policy", "_rate", "_stamp", "_tokens")

    def __init__(
        self,
        policy: RatePolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy or RatePolicy()
        self._clock = clock
        self._rate = self._policy.ceiling
        self._tokens = self._capacity()
        self._stamp = clock()
        self._last_decrease: float | None = None

    @property
    def rate(self) -> float:
        """The allowed requests per second right now."""
        return self._rate

    def _capacity(self) -> float:
        return max(1.0, self._rate * self._policy.burst_seconds)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._stamp)
        self._stamp = max(self._stamp, now)
        self._tokens = min(self._capacity(), self._tokens + elapsed * self._rate)

    def acquire(self) -> float:
        """Take a token and return 0.0, or return the seconds to wait (taking nothing)."""
        self._refill(self._clock())
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self._rate

    def throttled(self) -> None:
        """A request was throttled: slow down multiplicatively (once per cooldown)."""
        now = self._clock()
        if self._last_decrease is not None and now - self._last_decrease < self._policy.cooldown:
            return
        self._refill(now)
        self._last_decrease = now
        self._rate = max(self._policy.floor, self._rate * self._policy.decrease)
        self._tokens = min(self._tokens, self._capacity())

    def succeeded(self) -> None:
        """A request succeeded: speed up additively, up to the ceiling."""
        self._refill(self._clock())
        self._rate = min(self._policy.ceiling, self._rate + self._policy.increase)
