"""The consumer's buffer of fetched chunks, bounded by their encoded size.

:class:`ChunkBuffer` keeps decoded batches (:class:`~logstream.client.chunks.Chunk`) in the
order they were fetched, across partitions, and the sum of their encoded sizes, which the
fetcher compares with ``max_buffer_bytes`` before reading more.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from logstream.client.chunks import Chunk
from logstream.types import TopicPartition


class ChunkBuffer:
    """Fetched chunks, oldest first, and their byte total against ``max_bytes``.

    Not thread-safe: its owner, :class:`~logstream.client.subscription.SubscriptionState`,
    calls it only with the state's lock held. The methods that free room return True when
    the buffer went from full to not full: the owner then wakes the fetcher, which waits for
    room only while the buffer is full.
    """

    __slots__ = ("_chunks", "max_bytes", "nbytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._chunks: deque[Chunk] = deque()

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def full(self) -> bool:
        return self.nbytes >= self.max_bytes

    def head(self) -> Chunk:
        """The oldest chunk (the buffer must not be empty)."""
        return self._chunks[0]

    def add(self, chunks: Iterable[Chunk]) -> None:
        for c in chunks:
            self._chunks.append(c)
            self.nbytes += c.nbytes

    def drop_head(self) -> bool:
        """Drop the oldest chunk; True when that made room in a full buffer."""
        full = self.full
        self.nbytes -= self._chunks.popleft().nbytes
        return full and not self.full

    def drop_partition(self, tp: TopicPartition) -> bool:
        """Drop every chunk of ``tp``; True when that made room in a full buffer."""
        full = self.full
        self._chunks = deque(c for c in self._chunks if (c.topic, c.partition) != tp)
        self.nbytes = sum(c.nbytes for c in self._chunks)
        return full and not self.full

    def clear(self) -> None:
        self._chunks.clear()
        self.nbytes = 0
