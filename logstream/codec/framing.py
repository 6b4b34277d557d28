"""Framing: do back-to-back batches follow from one another? The rule for the header bytes
the CRC does not cover.

``base_offset`` and ``batch_length`` sit before the CRC's range (``header.py``), so a bit
flip in them passes :func:`~logstream.codec.check.validate_batch` whenever the flipped
length still names the same bytes, and always for ``base_offset``. Served as is, such a
batch puts records under wrong offsets, skips offsets, or (a length reaching past the data)
stalls a reader that waits for the rest of a batch that never comes. The rule, one for
every read path:

* each batch's ``batch_length`` is at least the header and ends where the next batch
  starts; the last one ends exactly at the end of the buffer (a read answer holds whole
  batches only);
* the first batch starts at or before the offset the read asked for (``base_offset <=
  position``; a reader skips batches wholly below it), and each later batch starts at the
  previous one's next offset (``base_offset == previous base_offset + record_count``):
  no offset is skipped or repeated.

Two forms of the same rule:

* :func:`walk_frames`: a sequential walk for readers that know nothing but the bytes
  (the consumer, recovery tools); yields ``(position, header)`` and raises
  CorruptRecordError at the first batch that does not follow;
* :func:`check_frames`: a check for storage, which knows every batch's position and base
  offset from its dense offset index: a ``struct`` loop for a few batches, a fixed number
  of numpy gathers for many, so a read of thousands of small batches costs no Python per
  batch.

Both raise CorruptRecordError (CORRUPT_MESSAGE) whose message names the byte position of
the first batch that does not follow and whose ``first_offset`` is the first offset that
cannot be served. Pure and thread-safe.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from logstream.codec.header import (
    BATCH_LENGTH_POS,
    HEADER_SIZE,
    BatchHeader,
    Buffer,
    read_header,
)
from logstream.errors import CorruptRecordError

_FRAME_BYTES = BATCH_LENGTH_POS + 4  # base_offset (int64) then batch_length (int32)


def _framing_error(message: str, *, first_offset: int) -> CorruptRecordError:
    """A batch's ``base_offset`` or ``batch_length`` does not follow from its neighbours."""
    return CorruptRecordError(message, first_offset=first_offset)


def walk_frames(buf: Buffer, position: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(byte position, header)`` of each batch of ``buf`` (a read answer: whole
    batches back to back), checking the framing rule (module docstring) before each
    yield. ``position`` is the offset the read asked for (None: the first batch is taken
    as it is). No CRC is checked here: callers that need it call ``validate_batch``."""
    pos = 0
    end = len(buf)
    expected = position
    first = True
    while pos < end:
        at = expected if expected is not None else -1
        if end - pos < HEADER_SIZE:
            raise _framing_error(
                f"{end - pos} bytes after the last whole batch (at byte {pos}, offset "
                f"{at}): a read answer holds whole batches only",
                first_offset=at,
            )
        header = read_header(buf, pos)
        length = header.batch_length
        if length < HEADER_SIZE or length > end - pos:
            raise _framing_error(
                f"batch at byte {pos} (offset {at}) declares batch_length {length}; "
                f"{end - pos} bytes are left",
                first_offset=at,
            )
        if expected is not None:
            # The first batch may lie wholly below (the reader skips it), never above.
            base = header.base_offset
            follows = base <= expected if first else base == expected
            if not follows:
                raise _framing_error(
                    f"batch at byte {pos} has base offset {header.base_offset} "
                    f"({header.record_count} records); offset {expected} was expected",
                    first_offset=expected,
                )
        yield pos, header
        expected = header.next_offset
        first = False
        pos += length


def check_frames(buf: Buffer, positions: np.ndarray, base_offsets: np.ndarray) -> int:
    """Check the framing of ``buf`` against what an index says: batch ``i`` starts at
    ``positions[i]`` (ascending, the first at 0) with ``base_offsets[i]``, and the last
    ends at ``len(buf)``. Returns how many leading batches follow the rule (a reader
    serves those and stops before the first that does not); raises CorruptRecordError
    when the first batch does not.

    Up to :data:`_SMALL` batches a ``struct`` loop; above, the two fields of every batch
    are gathered as little-endian words from four views of the buffer (one per position
    modulo 4), a fixed number of numpy calls whatever the count."""
    n = len(positions)
    if n == 0:
        return 0
    end = len(buf)
    if n <= _SMALL:
        bad = _first_bad_small(buf, positions.tolist(), base_offsets.tolist(), end)
    else:
        bad = _first_bad_numpy(
            buf,
            positions.astype(np.int64, copy=False),
            base_offsets.astype(np.int64, copy=False),
            end,
        )
    if bad < 0:
        return n
    if bad > 0:
        return bad
    at = int(positions[0])
    following = int(positions[1]) if n > 1 else end
    header = read_header(buf, at) if at + HEADER_SIZE <= end else None
    got = (
        "a cut header"
        if header is None
        else (f"base offset {header.base_offset}, batch_length {header.batch_length}")
    )
    raise _framing_error(
        f"batch at byte {at} should hold offset {int(base_offsets[0])} and end at byte "
        f"{following}; its header says {got}",
        first_offset=int(base_offsets[0]),
    )


_SMALL = 16
_FRAME = struct.Struct("<qi")  # base_offset, batch_length


def _first_bad_small(buf: Buffer, positions: list[int], bases: list[int], end: int) -> int:
    n = len(positions)
    for i, pos in enumerate(positions):
        following = positions[i + 1] if i + 1 < n else end
        if pos + _FRAME_BYTES > end:
            return i
        base, length = _FRAME.unpack_from(buf, pos)
        if base != bases[i] or pos + length != following:
            return i
    return -1


def _first_bad_numpy(buf: Buffer, pos: np.ndarray, bases: np.ndarray, end: int) -> int:
    n = len(pos)
    ends = np.empty(n, dtype=np.int64)
    ends[:-1] = pos[1:]
    ends[-1] = end
    whole = pos + _FRAME_BYTES <= end
    base = np.zeros(n, dtype=np.int64)
    length = np.zeros(n, dtype=np.int64)
    residue = pos & 3
    for r in range(4):
        sel = np.flatnonzero((residue == r) & whole)
        if not sel.size:
            continue
        words = np.frombuffer(buf, dtype="<u4", count=(end - r) // 4, offset=r)
        w = (pos[sel] - r) >> 2
        low = words[w].astype(np.uint64)
        high = words[w + 1].astype(np.uint64)
        base[sel] = ((high << np.uint64(32)) | low).view(np.int64)
        length[sel] = words[w + 2].view("<i4")
    wrong = ~whole | (base != bases) | (pos + length != ends)
    if not wrong.any():
        return -1
    return int(np.argmax(wrong))
