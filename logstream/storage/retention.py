"""Retention rules as pure functions (no I/O), so they can be tested against a model.

Whole sealed segments are deleted oldest first; the last segment (active, or about to be)
is never deleted. A segment is expired by time when its largest timestamp is older than
``now - retention_ms`` (Kafka's rule: the largest timestamp, not the file mtime). By size,
the oldest segments go while the partition stays at least ``retention_bytes`` big without
them. The deletable set is always a prefix: scanning stops at the first survivor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def deletable_prefix(
    sizes: Sequence[int],
    max_timestamp: Callable[[int], int | None],
    *,
    now_ms: int,
    retention_ms: int,
    retention_bytes: int,
) -> int:
    """How many leading segments to delete (never the last one). ``sizes[i]`` is segment
    i's byte size; ``max_timestamp(i)`` its largest timestamp (None when empty), asked only
    for the segments the time rule has to look at (it may cost a read)."""
    candidates = len(sizes) - 1
    if candidates <= 0:
        return 0
    by_time = 0
    if retention_ms >= 0:
        cutoff = now_ms - retention_ms
        while by_time < candidates:
            ts = max_timestamp(by_time)
            if ts is not None and ts >= cutoff:
                break
            by_time += 1
    by_size = 0
    if retention_bytes >= 0:
        excess = sum(sizes) - retention_bytes
        while by_size < candidates and excess - sizes[by_size] >= 0:
            excess -= sizes[by_size]
            by_size += 1
    return max(by_time, by_size)
