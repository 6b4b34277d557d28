"""Reading a queue group's records back from the logs: whole ranges (state replay, dead
letters) and a fetch's records cut out of the stored batches.

A fetch hands out at most a few hundred records, usually a run of consecutive offsets of
one producer batch (512 KiB by default: ~4,000 records of 100 B), and the next fetch of
any member of the group takes the run after it (acquire goes in offset order). So
:class:`FetchCache` keeps, per partition, the last chunk of stored batches a fetch read
(its bytes, and each batch's decoded columns once one was cut): the next fetches cut from
memory, with no read, frame check or decode. A fetch also looks in the admissions' cache
before it reads: a record acquired right after it was appended (a request pushed to a
waiting responder) is cut from the bytes its admission read, not read a second time.
A log's batches never change once written, and a deleted and re-created partition is a
new log object (the key), so an entry is never stale; entries below the log start
(retention) are not used. At most
:data:`CACHE_PARTITIONS` partitions are kept (least recently used dropped).

The admissions' cache is also handed each small batch a produce just appended to a
partition it already holds (:meth:`FetchCache.offer`): the next admission takes a request
from the bytes its produce brought instead of reading them back from the segment (a
read, an index lookup and a frame check per request on the way to a waiting responder).

Thread-safety: :class:`FetchCache` takes its own lock around its table; the chunks in it
are not changed after they are made (their decoded-batch memo only grows).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from logstream.codec import (
    DecodedBatch,
    decode_batch,
    encode_rows,
    iter_headers,
    next_offset_after,
    read_header,
)
from logstream.errors import OffsetOutOfRangeError
from logstream.storage import PartitionLog

READ_BYTES = 4 * 1024 * 1024
FETCH_READ_BYTES = 64 * 1024
"""Read size when cutting out a fetch's records: every byte read is also frame-checked,
and reading 4 MiB for 100 records of 100 B cost a fifth of the broker's time. A read
always returns at least one whole batch."""
CACHE_PARTITIONS = 256
OFFER_MAX_BYTES = 16 * 1024
"""Larger produced batches are not offered (a producer's big batches are read as before)."""


def _read(plog: PartitionLog, pos: int, max_bytes: int) -> tuple[int, bytes]:
    """(position read from, whole batches from the one holding it); the position moves up
    to the log start if retention deleted the records below it meanwhile."""
    while True:
        try:
            return pos, bytes(plog.read(pos, max_bytes))
        except OffsetOutOfRangeError:
            if plog.log_start_offset <= pos:
                raise
            pos = plog.log_start_offset


def read_range(
    plog: PartitionLog, first: int, end: int, max_bytes: int = READ_BYTES
) -> Iterator[bytes]:
    """Whole batches covering offsets ``[first, end)`` (the first may start before);
    whatever retention deleted meanwhile is left out."""
    pos = max(first, plog.log_start_offset)
    while pos < end:
        pos, data = _read(plog, pos, max_bytes)
        if not data:
            return
        nxt = next_offset_after(data)
        if nxt is None or nxt <= pos:
            return
        yield data
        pos = nxt


@dataclass
class Chunk:
    """Whole stored batches covering offsets ``[first, end)``."""

    first: int
    end: int
    data: bytes
    decoded: dict[int, DecodedBatch] = field(default_factory=dict)  # by byte position

    def decode(self, pos: int) -> DecodedBatch:
        batch = self.decoded.get(pos)
        if batch is None:
            batch = self.decoded[pos] = decode_batch(self.data, pos, verify=False)
        return batch


def read_chunk(plog: PartitionLog, pos: int) -> Chunk | None:
    """The stored batches from the one holding ``pos`` (None at the log end)."""
    pos, data = _read(plog, pos, FETCH_READ_BYTES)
    nxt = next_offset_after(data) if data else None
    if nxt is None or nxt <= pos:
        return None
    return Chunk(read_header(data, 0).base_offset, nxt, data)


class FetchCache:
    """The last chunk read per partition (see the module docstring)."""

    def __init__(self, partitions: int = CACHE_PARTITIONS) -> None:
        self._lock = threading.Lock()
        self._chunks: OrderedDict[PartitionLog, Chunk] = OrderedDict()
        self._limit = partitions
        self.hits = self.misses = 0

    def cached(self, plog: PartitionLog, pos: int) -> Chunk | None:
        """The chunk held for ``plog`` when it covers ``pos`` (no read, no count)."""
        with self._lock:
            c = self._chunks.get(plog)
        if c is not None and c.first <= pos < c.end and pos >= plog.log_start_offset:
            return c
        return None

    def chunk(self, plog: PartitionLog, pos: int, also: FetchCache | None = None) -> Chunk | None:
        """The chunk holding ``pos``: this cache's, else ``also``'s (a hit of either does
        not read), else read and kept here."""
        with self._lock:
            c = self._chunks.get(plog)
            if c is not None and c.first <= pos < c.end and pos >= plog.log_start_offset:
                self._chunks.move_to_end(plog)
                self.hits += 1
                return c
        if also is not None and (c := also.cached(plog, pos)) is not None:
            with self._lock:
                self.hits += 1
            return c
        c = read_chunk(plog, pos)
        with self._lock:
            self.misses += 1
            if c is not None:
                self._chunks[plog] = c
                self._chunks.move_to_end(plog)
                while len(self._chunks) > self._limit:
                    self._chunks.popitem(last=False)
        return c

    def holds(self, plog: PartitionLog, first: int) -> bool:
        """Whether :meth:`offer` would keep batches starting at offset ``first`` now."""
        with self._lock:
            c = self._chunks.get(plog)
        return c is not None and c.end == first

    def offer(self, plog: PartitionLog, first: int, end: int, stored: bytes) -> bool:
        """``stored``: the exact bytes of whole batches just appended to ``plog`` at
        offsets ``[first, end)``. Kept, as the partition's chunk, only when this cache holds
        a chunk of ``plog`` that ends at ``first`` (a queue group's admission read up to the
        log end); a chunk that ends elsewhere (an admission behind, reading its backlog) is
        left alone: replacing it would make that admission read again. Not joined to the
        chunk before: every cut walks its chunk's batch headers from the start. Returns
        whether they were kept."""
        with self._lock:
            c = self._chunks.get(plog)
            if c is None or c.end != first:
                return False
            self._chunks[plog] = Chunk(first, end, stored)
            return True


def batches_for(
    plog: PartitionLog,
    offsets: np.ndarray,
    cache: FetchCache | None = None,
    also: FetchCache | None = None,
) -> bytes:
    """Batches holding exactly ``offsets`` (ascending): a stored batch goes as it is when
    every record of it is wanted, otherwise each run of wanted offsets in it is encoded
    again as a batch of its own (uncompressed, offsets kept), so a fetch of 100 records
    out of a 512 KiB producer batch sends 100 records. ``also``: a second cache looked in
    before reading (the admissions': records acquired right after they were admitted are
    cut from the bytes the admission read)."""
    if len(offsets) == 0:
        return b""
    breaks = np.flatnonzero(np.diff(offsets) > 1) + 1
    out: list[bytes] = []
    covered = -1
    for run in np.split(offsets, breaks):
        pos, end = max(int(run[0]), covered), int(run[-1]) + 1
        while pos < end:
            c = cache.chunk(plog, pos, also) if cache is not None else read_chunk(plog, pos)
            if c is None:
                break
            out.append(_only(c, offsets))
            covered = pos = c.end
    return b"".join(out)


def _only(chunk: Chunk, offsets: np.ndarray) -> bytes:
    """The batches of ``chunk`` cut down to ``offsets``."""
    data = chunk.data
    parts: list[bytes] = []
    first, last = int(offsets[0]), int(offsets[-1])
    for pos, h in iter_headers(data):
        if h.base_offset > last:
            break  # the chunk runs on past the offsets wanted
        if h.next_offset <= first:
            continue
        lo = int(np.searchsorted(offsets, h.base_offset))
        hi = int(np.searchsorted(offsets, h.next_offset))
        if hi - lo == h.record_count:
            parts.append(data[pos : pos + h.batch_length])
            continue
        if hi == lo:
            continue
        batch = chunk.decode(pos)
        sel = offsets[lo:hi] - h.base_offset
        cuts = np.flatnonzero(np.diff(sel) != 1)
        starts = np.concatenate(([sel[0]], sel[cuts + 1])).tolist()
        stops = (np.concatenate((sel[cuts], [sel[-1]])) + 1).tolist()
        parts.extend(encode_rows(batch, a, b) for a, b in zip(starts, stops, strict=True))
    return b"".join(parts)
