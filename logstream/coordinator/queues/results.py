"""Per-offset results of queue operations, and offsets <-> ranges.

A request that names several records (ack, nack, reject, extend) is applied record by
record: each offset gets a code, ``0`` for success or the code of a named error from
:mod:`logstream.errors` (``QUEUE_RECORD_NOT_HELD``, ``QUEUE_RECORD_FINISHED``,
``QUEUE_OFFSET_NOT_IN_WINDOW``, ``INVALID_REQUEST`` for an offset repeated in one request).
The refused ones change nothing; the others are applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from logstream.errors import (
    NONE_CODE,
    InvalidRequestError,
    QueueOffsetNotInWindowError,
    QueueRecordFinishedError,
    QueueRecordNotHeldError,
)

OK = NONE_CODE
NOT_HELD = QueueRecordNotHeldError.code
FINISHED = QueueRecordFinishedError.code
NOT_IN_WINDOW = QueueOffsetNotInWindowError.code
REPEATED = InvalidRequestError.code


@dataclass(frozen=True)
class OpResult:
    """``codes[i]`` is the outcome for ``offsets[i]`` (same order as the request)."""

    offsets: np.ndarray
    codes: np.ndarray
    extra: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Operation-specific value per offset (nack: the due time, -1 if dead-lettered)."""

    @property
    def ok(self) -> np.ndarray:
        """The offsets that were applied."""
        applied: np.ndarray = self.offsets[self.codes == OK]
        return applied

    @property
    def all_ok(self) -> bool:
        return bool((self.codes == OK).all())

    def failures(self) -> list[tuple[int, int]]:
        """``(offset, code)`` of every refused offset."""
        bad = np.flatnonzero(self.codes != OK)
        return [(int(self.offsets[i]), int(self.codes[i])) for i in bad]


def as_offsets(offsets: object) -> np.ndarray:
    """Any sequence of offsets as a 1-d int64 array."""
    return np.atleast_1d(np.asarray(offsets, dtype=np.int64)).ravel()


def to_ranges(offsets: np.ndarray) -> list[tuple[int, int]]:
    """Sorted offsets as ``(first, end_exclusive)`` runs of consecutive offsets."""
    if len(offsets) == 0:
        return []
    firsts, lengths = runs(offsets)
    return [(int(f), int(f + n)) for f, n in zip(firsts, lengths, strict=True)]


def runs(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (in any order) as sorted runs: (first offsets i64, lengths u32)."""
    o = np.asarray(offsets, np.int64)
    if len(o) > 1 and not (o[1:] > o[:-1]).all():  # the usual case is ascending already
        o = np.unique(o)
    if len(o) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint32)
    breaks = np.flatnonzero(np.diff(o) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(o)]))
    return o[starts], (ends - starts).astype(np.uint32)


def from_runs(firsts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The offsets of runs, ascending."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    lens = lengths.astype(np.int64)
    base = np.repeat(firsts.astype(np.int64) - np.cumsum(lens) + lens, lens)
    return base + np.arange(total, dtype=np.int64)
