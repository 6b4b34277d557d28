"""Record filters for ``tail``/``consume``/``export``: match (key, value regex, headers), then
thin out (sample 1 in N, rate limit). Pure; time comes from an injected clock.

Order: a record must pass every match filter; then the sampler keeps every N-th *matching*
record; then the rate limiter drops what exceeds the rate (counted, reported in the summary).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.codec import expiry_of
from logstream.types import Record

__all__ = ["FilterStats", "Matcher", "RateLimiter", "RecordFilter", "Sampler"]


@dataclass
class Matcher:
    """Match filters; all given must hold. ``keys`` matches any of them exactly (UTF-8);
    ``grep`` searches the value (decoded as UTF-8, bad bytes replaced); ``headers`` are
    (name, value) pairs that must all be present, ``value`` None meaning "any value";
    ``skip_expired`` leaves out records whose ``logstream-expires-at`` time has passed."""

    keys: Sequence[str] = ()
    grep: str | None = None
    headers: Sequence[tuple[str, str | None]] = ()
    invert_grep: bool = False
    skip_expired: bool = False
    clock: Clock = SYSTEM_CLOCK

    def __post_init__(self) -> None:
        self._keys = {k.encode("utf-8") for k in self.keys}
        try:
            self._regex = re.compile(self.grep) if self.grep is not None else None
        except re.error as exc:
            raise ValueError(f"bad --grep regex {self.grep!r}: {exc}") from None
        self._headers = [
            (name, value.encode("utf-8") if value is not None else None)
            for name, value in self.headers
        ]

    @property
    def active(self) -> bool:
        return bool(self._keys or self._regex is not None or self._headers or self.skip_expired)

    def __call__(self, record: Record) -> bool:
        if self._keys and record.key not in self._keys:
            return False
        if self._regex is not None:
            text = (record.value or b"").decode("utf-8", errors="replace")
            if (self._regex.search(text) is None) != self.invert_grep:
                return False
        for name, value in self._headers:
            if not any(k == name and (value is None or v == value) for k, v in record.headers):
                return False
        if self.skip_expired and record.headers:
            expires = expiry_of(record.headers)
            if 0 < expires <= self.clock.now_ms():
                return False
        return True


class Sampler:
    """Keeps the 1st, (N+1)-th, (2N+1)-th... record it sees: deterministic, so a re-run over
    the same range prints the same sample."""

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError("sample rate must be 1/N with N >= 1")
        self.every = every
        self._seen = 0

    def __call__(self, record: Record) -> bool:
        keep = self._seen % self.every == 0
        self._seen += 1
        return keep


class RateLimiter:
    """A token bucket: at most ``per_second`` records per second on average, bursts up to one
    second's worth. Records over the rate are dropped (not delayed), so a live view stays live."""

    def __init__(self, per_second: float, clock: Clock = SYSTEM_CLOCK) -> None:
        if per_second <= 0:
            raise ValueError("rate must be positive")
        self.per_second = per_second
        self._clock = clock
        self._capacity = max(per_second, 1.0)
        self._tokens = self._capacity
        self._last = clock.monotonic()

    def __call__(self, record: Record) -> bool:
        now = self._clock.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens >= 1.0 - 1e-9:
            self._tokens -= 1.0
            return True
        return False


@dataclass
class FilterStats:
    seen: int = 0
    matched: int = 0
    sampled_out: int = 0
    rate_dropped: int = 0


@dataclass
class RecordFilter:
    """The whole chain; ``__call__`` says whether to emit, and counts why not."""

    matcher: Matcher = field(default_factory=Matcher)
    sampler: Sampler | None = None
    limiter: RateLimiter | None = None
    stats: FilterStats = field(default_factory=FilterStats)

    def __call__(self, record: Record) -> bool:
        self.stats.seen += 1
        if not self.matcher(record):
            return False
        self.stats.matched += 1
        if self.sampler is not None and not self.sampler(record):
            self.stats.sampled_out += 1
            return False
        if self.limiter is not None and not self.limiter(record):
            self.stats.rate_dropped += 1
            return False
        return True
