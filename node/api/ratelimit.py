"""Per-client rate limits: every request, and misses (lookups that found nothing) separately.

Two token buckets per client (its IP address): ``requests_per_s`` with ``burst`` for all requests,
and ``misses_per_min`` with ``miss_burst`` for misses. Serial numbers are random (at least 80
bits), so a guesser lives on misses: once a client's miss bucket is empty, *every* identifier
lookup it makes is refused with 429 (Retry-After) until the bucket refills, hits included, so
that the answer to a guess tells nothing while the limit holds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from node.errors import RateLimitError
from node.settings import ApiRateLimitSettings


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """Token buckets by key, the least recently used dropped beyond ``max_keys``."""

    def __init__(
        self, rate_per_s: float, burst: int, max_keys: int, clock: Callable[[], float]
    ) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _bucket(self, key: str) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        return bucket

    def wait_s(self, key: str) -> float:
        """0 if ``key`` has a token now, else the seconds until it has one."""
        bucket = self._bucket(key)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate

    def take(self, key: str) -> float:
        """Take a token; return 0, or the seconds to wait when there is none (nothing taken)."""
        bucket = self._bucket(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


class RateLimiter:
    def __init__(
        self, settings: ApiRateLimitSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.requests = TokenBuckets(
            settings.requests_per_s, settings.burst, settings.max_clients, clock
        )
        self.misses = TokenBuckets(
            settings.misses_per_min / 60.0, settings.miss_burst, settings.max_clients, clock
        )

    def request(self, client: str) -> None:
        wait = self.requests.take(client)
        if wait:
            raise RateLimitError(
                f"too many requests from {client}; retry in {wait:.1f} s", retry_after_s=wait
            )

    def check_misses(self, client: str) -> None:
        """Refuse any lookup while the client's miss budget is spent."""
        wait = self.misses.wait_s(client)
        if wait:
            raise RateLimitError(
                f"too many lookups of unknown identifiers from {client}; identifier lookups are "
                f"paused for this client, retry in {wait:.0f} s",
                retry_after_s=wait,
            )

    def miss(self, client: str) -> None:
        self.misses.take(client)
