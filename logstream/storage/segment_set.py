"""SegmentSet: a partition's segments in base-offset order, with the lookups over them.

The set keeps two parallel lists, the segments and their base offsets, so a lookup is one
``bisect`` over plain ints. Base offsets are strictly increasing and each segment covers
``[base_offset, next base_offset)``; only the last one grows. Changes happen at the ends
only: :meth:`append` a new last segment, :meth:`pop` it, :meth:`drop_prefix` for
retention.

Concurrency: not thread-safe; the owning partition's lock guards every call.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Generic, TypeVar, overload

from logstream.storage.segment_reader import SegmentReader

S = TypeVar("S", bound=SegmentReader)


class SegmentSet(Generic[S]):
    """Segments ordered by base offset; see the module docstring."""

    def __init__(self, segments: list[S] | None = None) -> None:
        self._segments: list[S] = list(segments or [])
        self._bases: list[int] = [s.base_offset for s in self._segments]
        assert all(a < b for a, b in zip(self._bases, self._bases[1:], strict=False))

    def __len__(self) -> int:
        return len(self._segments)

    def __bool__(self) -> bool:
        return bool(self._segments)

    def __iter__(self) -> Iterator[S]:
        return iter(self._segments)

    @overload
    def __getitem__(self, i: int) -> S: ...

    @overload
    def __getitem__(self, i: slice) -> list[S]: ...

    def __getitem__(self, i: int | slice) -> S | list[S]:
        return self._segments[i]

    @property
    def last(self) -> S | None:
        return self._segments[-1] if self._segments else None

    @property
    def bases(self) -> list[int]:
        """Base offsets in order (a copy)."""
        return list(self._bases)

    def floor_index(self, offset: int) -> int:
        """Index of the segment that holds ``offset``: the last one whose base offset is
        <= ``offset`` (-1 when ``offset`` lies before the first)."""
        return bisect.bisect_right(self._bases, offset) - 1

    def floor(self, offset: int) -> S:
        """The segment that holds ``offset`` (the caller checked it is in range)."""
        return self._segments[self.floor_index(offset)]

    def append(self, segment: S) -> None:
        assert not self._bases or segment.base_offset > self._bases[-1]
        self._segments.append(segment)
        self._bases.append(segment.base_offset)

    def pop(self) -> S:
        self._bases.pop()
        return self._segments.pop()

    def drop_prefix(self, k: int) -> list[S]:
        """Remove and return the first ``k`` segments."""
        gone = self._segments[:k]
        del self._segments[:k]
        del self._bases[:k]
        return gone
