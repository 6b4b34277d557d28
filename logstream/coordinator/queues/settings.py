"""Queue-group settings, their defaults and validation, and the nack backoff rule."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from logstream.errors import InvalidConfigError

START_EARLIEST = -2
START_LATEST = -1
EXPIRED_DEAD_LETTER = "dead-letter"
EXPIRED_DROP = "drop"
MAX_DELIVERIES_LIMIT = 65_535  # deliveries are counted in a u16
MAX_WINDOW_SIZE = 1_000_000
"""The window's columns are allocated whole (~51 bytes a record): 1 M is ~50 MiB a partition."""
MAX_DURATION_MS = 7 * 24 * 3600 * 1000
"""Longest lease, backoff or nack delay: deadlines are i64 milliseconds added to the clock,
and a week is already far past any sensible redelivery time."""


@dataclass(frozen=True)
class QueueSettings:
    """How one queue group behaves. Every field has the default a new group gets.

    ``start`` is where a new group begins on each partition: ``"earliest"`` (default: a queue
    holds what was sent before any worker started), ``"latest"``, or a timestamp in ms (the
    first record at or after it). ``dead_letter_topic`` empty means ``<group>.dlq``.
    """

    lease_ms: int = 30_000
    max_deliveries: int = 5
    backoff_initial_ms: int = 1_000
    backoff_max_ms: int = 60_000
    dead_letter_topic: str = ""
    key_ordered: bool = False
    auto_ack: bool = False
    window_size: int = 10_000
    start: str | int = "earliest"
    expired_action: str = EXPIRED_DEAD_LETTER

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.lease_ms <= MAX_DURATION_MS:
            problems.append(f"lease_ms must be in 1..{MAX_DURATION_MS}, got {self.lease_ms}")
        if not 1 <= self.max_deliveries <= MAX_DELIVERIES_LIMIT:
            problems.append(
                f"max_deliveries must be in 1..{MAX_DELIVERIES_LIMIT}, got {self.max_deliveries}"
            )
        if self.backoff_initial_ms < 0:
            problems.append(f"backoff_initial_ms must be >= 0, got {self.backoff_initial_ms}")
        if self.backoff_max_ms < self.backoff_initial_ms:
            problems.append("backoff_max_ms must be >= backoff_initial_ms")
        if self.backoff_max_ms > MAX_DURATION_MS:
            problems.append(f"backoff_max_ms must be <= {MAX_DURATION_MS}")
        if not 1 <= self.window_size <= MAX_WINDOW_SIZE:
            problems.append(f"window_size must be in 1..{MAX_WINDOW_SIZE}, got {self.window_size}")
        if isinstance(self.start, str):
            if self.start not in ("earliest", "latest"):
                problems.append(f"start must be earliest, latest or a timestamp: {self.start!r}")
        elif self.start < 0:
            problems.append(f"start timestamp must be >= 0, got {self.start}")
        if self.expired_action not in (EXPIRED_DEAD_LETTER, EXPIRED_DROP):
            problems.append(f"expired_action must be dead-letter or drop: {self.expired_action!r}")
        if problems:
            raise InvalidConfigError("; ".join(problems))

    def dead_letter_topic_for(self, group: str) -> str:
        return self.dead_letter_topic or f"{group}.dlq"

    @property
    def start_code(self) -> int:
        """``start`` as one integer: START_EARLIEST, START_LATEST or a timestamp."""
        if self.start == "earliest":
            return START_EARLIEST
        if self.start == "latest":
            return START_LATEST
        return int(self.start)

    @staticmethod
    def start_from_code(code: int) -> str | int:
        return {START_EARLIEST: "earliest", START_LATEST: "latest"}.get(code, code)

    def replace(self, **changes: object) -> QueueSettings:
        """A copy with some settings changed (validated like a new one)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.backoff_initial_ms, self.backoff_max_ms)


@dataclass(frozen=True)
class Backoff:
    """Exponential nack backoff: ``initial * 2**(deliveries - 1)``, capped at ``max``."""

    initial_ms: int = 1_000
    max_ms: int = 60_000

    def delay_ms(self, deliveries: np.ndarray) -> np.ndarray:
        """Delay before redelivery of records nacked after ``deliveries`` deliveries."""
        exp = np.clip(deliveries.astype(np.int64) - 1, 0, 62)
        # 2**exp overflows int64 long before the cap matters: clip the exponent first
        limit = max(int(self.max_ms).bit_length(), 1)
        exp = np.minimum(exp, limit)
        delays: np.ndarray = np.minimum(np.int64(self.initial_ms) << exp, np.int64(self.max_ms))
        return delays
