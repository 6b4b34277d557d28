"""A clock that only moves when told to, for deterministic tests of time-based behaviour."""

from __future__ import annotations


class ManualClock:
    """Starts at ``start_ms``; ``advance(ms)`` moves both wall and monotonic time."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms
        self._mono = 0.0

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic(self) -> float:
        return self._mono

    def advance(self, ms: int) -> None:
        self._now_ms += ms
        self._mono += ms / 1000.0
