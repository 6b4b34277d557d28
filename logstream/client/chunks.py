"""Fetched data as the consumer holds it: whole decoded batches plus a cursor, and the
columnar view returned by ``Consumer.poll_batch``.

A fetch answer holds whole batches, so its first batch may start before the requested
offset; :func:`chunks_from_records` decodes every batch with one
:func:`logstream.codec.decode_batch` call each and sets the cursor past the records below
the position. Records become Python objects only in ``Consumer.poll`` (and only the ones
returned); ``poll_batch`` hands out numpy views of the decoded columns instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, count, repeat
from typing import Any, NamedTuple, overload

import numpy as np

from logstream.codec import (
    HEADER_SIZE,
    NONE,
    SMALL_BATCH_RECORDS,
    BatchRows,
    DecodedBatch,
    check_header_arithmetic,
    decode_batch,
    decode_headers,
    decode_rows,
    peek_length,
    read_header,
    validate_batch,
    walk_frames,
)
from logstream.errors import CorruptRecordError
from logstream.types import Headers, Record

# map(tuple.__new__, repeat(Record), rows) builds each Record in C: no Python frame per
# record (calling Record(...) runs the namedtuple's Python-level __new__, ~3x slower).
_tuple_new: Callable[[type[Record], tuple[Any, ...]], Record] = tuple.__new__  # type: ignore[assignment]


class Chunk:
    """One decoded batch of one partition, with a read cursor (``index``).

    ``epoch`` is the partition's seek epoch when it was fetched: a seek, pause or
    re-assignment bumps the epoch and makes older chunks stale. A small batch arrives as
    :class:`BatchRows` (Python lists: what ``poll`` and iteration hand out); its numpy
    columns (``batch``) are decoded only if ``poll_batch`` asks for them.
    """

    __slots__ = (
        "_batch",
        "_keys",
        "_raw",
        "_rows",
        "_stamps",
        "_values",
        "base",
        "epoch",
        "index",
        "n",
        "nbytes",
        "partition",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        partition: int,
        epoch: int,
        batch: DecodedBatch | BatchRows,
        start: int,
        raw: tuple[bytes | memoryview, int] | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.epoch = epoch
        header = batch.header
        self.base = header.base_offset
        self.n = header.record_count
        self.index = max(0, min(start - self.base, self.n))
        self.nbytes = header.batch_length
        self._keys: list[bytes | None] | None = None
        self._values: Sequence[bytes | None] | None = None
        self._stamps: list[int] | None = None
        self._batch: DecodedBatch | None = None
        self._rows: BatchRows | None = None
        self._raw = raw  # (buffer, position) of the encoded batch, for lazy columns
        if isinstance(batch, BatchRows):
            self._rows = batch
        else:
            self._batch = batch

    @property
    def batch(self) -> DecodedBatch:
        """The numpy columns (decoded on first use for a batch that arrived as rows)."""
        if self._batch is None:
            if self._raw is None:
                raise CorruptRecordError("no encoded batch to decode columns from")
            self._batch = decode_batch(*self._raw, verify=False)  # checked by decode_rows
        return self._batch

    @property
    def remaining(self) -> int:
        return self.n - self.index

    @property
    def next_offset(self) -> int:
        return self.base + self.index

    def take_records(self, limit: int) -> list[Record]:
        """Up to ``limit`` records from the cursor on, as :class:`Record` tuples."""
        return list(_records(self.take_run(limit)))

    def take_run(self, limit: int) -> RecordRun:
        """Up to ``limit`` records from the cursor on, as columns (no per-record object);
        the cursor moves past them."""
        i = self.index
        j = min(self.n, i + limit)
        self.index = j
        rows = self._rows
        if rows is not None:
            if rows.header.headers_length:
                headers: list[Headers] | None = [decode_headers(h) for h in rows.header_blobs[i:j]]
            else:
                headers = None
            return RecordRun(
                self.topic,
                self.partition,
                self.base + i,
                rows.timestamps[i:j],
                rows.keys[i:j],
                rows.values[i:j],
                headers,
            )
        batch = self.batch
        if self._values is None:
            self._values = _values(batch)
            stamps_arr = batch.timestamps
            if len(stamps_arr) and stamps_arr[0] == stamps_arr[-1] and _all_equal(stamps_arr):
                self._stamps = None  # one timestamp for the whole batch: share one int
            else:
                self._stamps = stamps_arr.tolist()
            self._keys = batch.key_list() if batch.header.keys_length or _has_keys(batch) else None
        keys = self._keys
        stamps = self._stamps
        return RecordRun(
            self.topic,
            self.partition,
            self.base + i,
            int(batch.timestamps[0]) if stamps is None else stamps[i:j],
            None if keys is None else keys[i:j],
            self._values[i:j],
            [batch.record_headers(k) for k in range(i, j)] if batch.header.headers_length else None,
        )

    def take_columns(self, limit: int) -> ColumnChunk:
        i = self.index
        j = min(self.n, i + limit)
        b = self.batch
        self.index = j
        return ColumnChunk(
            topic=self.topic,
            partition=self.partition,
            offsets=b.offsets[i:j],
            timestamps=b.timestamps[i:j],
            key_lengths=b.key_lengths[i:j],
            key_starts=b.key_starts[i:j],
            keys_buffer=b.keys,
            value_lengths=b.value_lengths[i:j],
            value_starts=b.value_starts[i:j],
            values_buffer=b.values,
            batch=b,
            first=i,
        )


def _all_equal(column: np.ndarray) -> bool:
    """Whether every item of an integer column equals the first: equal integers have equal
    bytes, and one bytes comparison costs a third of a numpy reduction at batch sizes."""
    return column.tobytes() == column[:1].tobytes() * len(column)


VALUE_BLOCK = 256
"""Values made into bytes objects at a time when a :class:`FixedSizeValues` is iterated."""


class FixedSizeValues(Sequence[bytes]):
    """The values of a run when they all have one size: the value bytes viewed as numpy
    fixed-size ``void`` items, made into ``bytes`` objects only as they are read.

    Iteration converts :data:`VALUE_BLOCK` items per ``tolist()`` call (exact bytes objects,
    no slice object per record: ~3x cheaper than slicing). A loop that drops each record
    then frees each block before the next is made, so the allocator reuses the same memory
    (and cache lines) instead of mapping fresh pages for a whole poll's values and
    unmapping them after it. Read-only; safe to read from any thread."""

    __slots__ = ("_items",)

    def __init__(self, items: np.ndarray) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> FixedSizeValues: ...

    def __getitem__(self, index: int | slice) -> bytes | FixedSizeValues:
        if isinstance(index, slice):  # a copy, as a list's slice is: holds no fetch buffer
            return FixedSizeValues(self._items[index].copy())
        found: bytes = self._items[index].tobytes()
        return found

    def __iter__(self) -> Iterator[bytes]:
        items = self._items
        blocks = [items[k : k + VALUE_BLOCK] for k in range(0, len(items), VALUE_BLOCK)]
        return chain.from_iterable(map(np.ndarray.tolist, blocks))


def _values(batch: DecodedBatch) -> Sequence[bytes | None]:
    """``batch.value_list()``; for values all of one length (and at least 2 of them), a
    :class:`FixedSizeValues` over the value bytes."""
    lengths = batch.value_lengths
    n = len(lengths)
    if n > 1:
        size = int(lengths[0])
        if 0 < size == int(lengths[-1]) and _all_equal(lengths):
            blob = batch.values
            if size * n == len(blob):
                return FixedSizeValues(np.frombuffer(blob, dtype=f"V{size}"))
    return batch.value_list()


def _has_keys(batch: DecodedBatch) -> bool:
    """Empty (b"") keys take no bytes: tell them apart from null keys by the lengths."""
    return bool(len(batch) and int(batch.key_lengths.max()) >= 0)


def chunks_from_records(
    topic: str, partition: int, epoch: int, records: bytes, position: int, *, verify: bool
) -> list[Chunk]:
    """Decode a fetch answer's batches; drop batches wholly below ``position``. Small
    batches decode to Python lists (:func:`decode_rows`), larger ones to numpy columns.
    Raises CorruptRecordError (see :func:`decode_until_damage`) at the first damaged batch."""
    chunks, damage = decode_until_damage(topic, partition, epoch, records, position, verify=verify)
    if damage is not None:
        raise damage
    return chunks


def decode_until_damage(
    topic: str, partition: int, epoch: int, records: bytes, position: int, *, verify: bool
) -> tuple[list[Chunk], CorruptRecordError | None]:
    """The chunks of every good batch before the first damaged one, and the damage (a
    CorruptRecordError naming ``topic``, ``partition`` and the offsets that cannot be
    read) or None. A batch is damaged when its CRC fails (with ``verify``) or when its
    base offset or length do not follow from the batch before it (the codec's framing
    rule, :func:`~logstream.codec.walk_frames`, always applied: the CRC does not cover
    them). An answer holds whole batches, so a trailing fragment is damage too."""
    out: list[Chunk] = []
    frames = walk_frames(records, position)
    try:
        for at, header in frames:
            # CRC first, also for a batch about to be skipped: a damaged header must raise,
            # not make its batch look like one below the position.
            if verify:
                try:
                    validate_batch(records, at)
                except CorruptRecordError as exc:
                    return out, _damage(exc, topic, partition, position, records, at)
            if header.base_offset + header.record_count <= position:
                continue
            batch: DecodedBatch | BatchRows
            if 0 < header.record_count <= SMALL_BATCH_RECORDS:
                batch = decode_rows(records, at, verify=False)  # checked just above (if asked)
            else:
                batch = decode_batch(records, at, verify=False)
            out.append(Chunk(topic, partition, epoch, batch, position, (records, at)))
            position = max(position, header.base_offset + header.record_count)
    except CorruptRecordError as exc:  # the framing rule: the message names the byte
        return out, _damage(exc, topic, partition, position, records, None)
    return out, None


def _damage(
    exc: CorruptRecordError,
    topic: str,
    partition: int,
    position: int,
    records: bytes,
    crc_failed_at: int | None,
) -> CorruptRecordError:
    """``exc`` as the consumer reports it: topic, partition, the first offset it cannot
    deliver and, for a CRC failure, the last: the next batch's base offset less one when
    the damaged batch's length leads to one, else (the last batch of the answer) its own
    header's extent when the header is consistent (:func:`_own_last_offset`)."""
    last: int | None = None
    if crc_failed_at is not None:
        at = crc_failed_at
        try:
            nxt = at + peek_length(records, at)
            if at < nxt and nxt + HEADER_SIZE <= len(records):
                following = read_header(records, nxt).base_offset
                last = following - 1 if following > position else None
            elif nxt == len(records):
                last = _own_last_offset(records, at, position)
        except CorruptRecordError:
            last = None
    span = f"{position}..{last}" if last is not None else f"{position} on"
    return CorruptRecordError(
        f"{topic}-{partition}: damaged batch at offsets {span}: {exc.message}",
        topic=topic,
        partition=partition,
        first_offset=position,
        last_offset=last,
    )


def _own_last_offset(records: bytes, at: int, position: int) -> int | None:
    """The last offset of the CRC-damaged batch at ``at`` from its own header, or None.

    Its ``base_offset`` and ``batch_length`` passed the framing rule; its ``record_count``
    is trusted only when the CRC-covered header adds up: for an uncompressed batch the
    record section's size follows from the count and the three blob lengths, so a damaged
    count does not add up. A compressed section's size says nothing of the count: None."""
    header = read_header(records, at)
    try:
        check_header_arithmetic(header)
    except CorruptRecordError:
        return None
    if header.compression != NONE:
        return None
    last = header.base_offset + header.record_count - 1
    return last if last >= position else None


class RecordRun(NamedTuple):
    """Consecutive records of one partition as Python lists (from one batch): what a
    :class:`RecordList` holds until its records are read."""

    topic: str
    partition: int
    first_offset: int
    timestamps: list[int] | int  # one int: every record has this timestamp
    keys: list[bytes | None] | None  # None: every key is null
    values: Sequence[bytes | None]  # a list, or FixedSizeValues (bytes made as read)
    headers: list[Headers] | None  # None: no record has headers


def _records(run: RecordRun) -> Iterator[Record]:
    """The run's records, built by one C-level pass (``map`` over ``zip``: no Python frame
    per record)."""
    stamps = run.timestamps
    return map(
        _tuple_new,
        repeat(Record),
        zip(
            repeat(run.topic),
            repeat(run.partition),
            count(run.first_offset),
            repeat(stamps) if isinstance(stamps, int) else stamps,
            repeat(None) if run.keys is None else run.keys,
            run.values,  # the shortest: ends the zip
            repeat(()) if run.headers is None else run.headers,
        ),
    )


class RecordList(Sequence[Record]):
    """What ``Consumer.poll`` returns: a read-only sequence of :class:`Record`, equal to the
    list of the same records.

    The records are held as columns (:class:`RecordRun`) and each ``Record`` is built when
    it is read. A loop that handles one record and drops it then allocates one tuple at a
    time, which Python frees at once; a list of 100,000 live tuples instead keeps the
    cyclic garbage collector scanning them (tuple subclasses are never untracked), which
    cost more than building them (docs/decisions/0014). Reading a
    record twice builds two equal tuples.
    """

    __slots__ = ("_len", "_runs")

    def __init__(self, runs: Iterable[RecordRun] = ()) -> None:
        self._runs: list[RecordRun] = list(runs)
        self._len = sum(len(r.values) for r in self._runs)

    def take_from(self, chunk: Chunk, limit: int) -> None:
        """Append up to ``limit`` records from ``chunk``'s cursor on (moving it)."""
        self.add_run(chunk.take_run(limit))

    def add_run(self, run: RecordRun) -> None:
        self._runs.append(run)
        self._len += len(run.values)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Record]:
        return chain.from_iterable(map(_records, self._runs))

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        if isinstance(index, slice):
            return list(self)[index]
        i = index + self._len if index < 0 else index
        if not 0 <= i < self._len:
            raise IndexError("RecordList index out of range")
        for run in self._runs:
            n = len(run.values)
            if i < n:
                stamps = run.timestamps
                return Record(
                    run.topic,
                    run.partition,
                    run.first_offset + i,
                    stamps if isinstance(stamps, int) else stamps[i],
                    None if run.keys is None else run.keys[i],
                    run.values[i],
                    () if run.headers is None else run.headers[i],
                )
            i -= n
        raise IndexError("RecordList index out of range")  # pragma: no cover

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordList | list | tuple):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable, like a list

    def __add__(self, other: Iterable[Record]) -> list[Record]:
        return [*self, *other]

    def __radd__(self, other: Iterable[Record]) -> list[Record]:
        return [*other, *self]

    def __repr__(self) -> str:
        return repr(list(self))


@dataclass(frozen=True, slots=True)
class ColumnChunk:
    """A run of consecutive records of one partition, as numpy views into one batch."""

    topic: str
    partition: int
    offsets: np.ndarray  # int64
    timestamps: np.ndarray  # int64, ms
    key_lengths: np.ndarray  # int32, -1 = null
    key_starts: np.ndarray  # int64, into keys_buffer
    keys_buffer: memoryview
    value_lengths: np.ndarray  # int32, -1 = null
    value_starts: np.ndarray  # int64, into values_buffer
    values_buffer: memoryview
    batch: DecodedBatch = field(repr=False)
    first: int = 0

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def values(self) -> list[bytes | None]:
        return self.batch.value_list()[self.first : self.first + len(self)]

    def keys(self) -> list[bytes | None]:
        return self.batch.key_list()[self.first : self.first + len(self)]


class RecordColumns:
    """What ``Consumer.poll_batch`` returns: records of possibly several partitions as columns.

    ``chunks`` holds one :class:`ColumnChunk` per (partition, batch) run, each with numpy
    views (no copy). The concatenated columns (``offsets``, ``timestamps``, ``partitions``,
    ``topics``) are built on first access. ``values()`` / ``keys()`` give lists of bytes;
    ``value_buffer()`` gives one contiguous buffer plus starts and lengths for zero-object
    processing (e.g. ``numpy.frombuffer`` of fixed-size payloads).
    """

    __slots__ = ("_cache", "chunks")

    def __init__(self, chunks: list[ColumnChunk]) -> None:
        self.chunks = chunks
        self._cache: dict[str, Any] = {}

    def __len__(self) -> int:
        return sum(len(c) for c in self.chunks)

    def __bool__(self) -> bool:
        return bool(self.chunks)

    def _concat(self, name: str, dtype: Any) -> np.ndarray:
        got = self._cache.get(name)
        if got is None:
            parts = [getattr(c, name) for c in self.chunks]
            got = np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
            self._cache[name] = got
        return got  # type: ignore[no-any-return]

    @property
    def offsets(self) -> np.ndarray:
        return self._concat("offsets", np.int64)

    @property
    def timestamps(self) -> np.ndarray:
        return self._concat("timestamps", np.int64)

    @property
    def partitions(self) -> np.ndarray:
        got = self._cache.get("partitions")
        if got is None:
            got = np.repeat(
                np.array([c.partition for c in self.chunks], dtype=np.int32),
                [len(c) for c in self.chunks],
            )
            self._cache["partitions"] = got
        return got  # type: ignore[no-any-return]

    @property
    def topics(self) -> np.ndarray:
        """Topic name per record (numpy object array; cheap: the strings are shared)."""
        got = self._cache.get("topics")
        if got is None:
            names = np.empty(len(self.chunks), dtype=object)
            names[:] = [c.topic for c in self.chunks]
            got = np.repeat(names, [len(c) for c in self.chunks])
            self._cache["topics"] = got
        return got  # type: ignore[no-any-return]

    def values(self) -> list[bytes | None]:
        out: list[bytes | None] = []
        for c in self.chunks:
            out.extend(c.values())
        return out

    def keys(self) -> list[bytes | None]:
        out: list[bytes | None] = []
        for c in self.chunks:
            out.extend(c.keys())
        return out

    def value_buffer(self) -> tuple[bytes, np.ndarray, np.ndarray]:
        """(buffer, starts int64, lengths int32): record i's value is
        ``buffer[starts[i]:starts[i]+lengths[i]]`` (length -1 = null)."""
        return self._buffer("value")

    def key_buffer(self) -> tuple[bytes, np.ndarray, np.ndarray]:
        return self._buffer("key")

    def _buffer(self, kind: str) -> tuple[bytes, np.ndarray, np.ndarray]:
        blobs: list[memoryview] = []
        starts: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        base = 0
        for c in self.chunks:
            s = getattr(c, f"{kind}_starts")
            ln = getattr(c, f"{kind}_lengths")
            buf = getattr(c, f"{kind}s_buffer")
            if len(c) == 0:
                continue
            lo = int(s[0])
            hi = int(s[-1]) + max(int(ln[-1]), 0)
            blobs.append(buf[lo:hi])
            starts.append(s - lo + base)
            lengths.append(ln)
            base += hi - lo
        if not blobs:
            return b"", np.empty(0, np.int64), np.empty(0, np.int32)
        return b"".join(blobs), np.concatenate(starts), np.concatenate(lengths)
