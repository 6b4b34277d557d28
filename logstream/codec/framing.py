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
  :class:`FramingError` at the first batch that does not follow;
* :func:`check_frames`: a vectorised check for storage, which knows every batch's
  position and base offset from its dense offset index; a few numpy gathers per read,
  however many batches it holds, so the fetch path stays free of per-batch Python.

Both raise :class:`FramingError` (a CorruptRecordError, CORRUPT_MESSAGE) carrying
``position`` (byte position of the first batch that does not follow) and
``first_offset`` (the first offset that cannot be served). Pure and thread-safe.
"""

from __future__ import annotations

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
_FRAME_DTYPE = np.dtype([("base_offset", "<i8"), ("batch_length", "<i4")])
assert _FRAME_DTYPE.itemsize == _FRAME_BYTES


class FramingError(CorruptRecordError):
    """A batch's ``base_offset`` or ``batch_length`` does not follow from its neighbours."""

    def __init__(self, message: str, *, position: int, first_offset: int) -> None:
        super().__init__(message, first_offset=first_offset)
        self.position = position


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
            raise FramingError(
                f"{end - pos} bytes after the last whole batch (at byte {pos}, offset "
                f"{at}): a read answer holds whole batches only",
                position=pos, first_offset=at,
            )
        header = read_header(buf, pos)
        length = header.batch_length
        if length < HEADER_SIZE or length > end - pos:
            raise FramingError(
                f"batch at byte {pos} (offset {at}) declares batch_length {length}; "
                f"{end - pos} bytes are left",
                position=pos, first_offset=at,
            )
        if expected is not None:
            # The first batch may lie wholly below (the reader skips it), never above.
            base = header.base_offset
            follows = base <= expected if first else base == expected
            if not follows:
                raise FramingError(
                    f"batch at byte {pos} has base offset {header.base_offset} "
                    f"({header.record_count} records); offset {expected} was expected",
                    position=pos, first_offset=expected,
                )
        yield pos, header
        expected = header.next_offset
        first = False
        pos += length


def check_frames(buf: Buffer, positions: np.ndarray, base_offsets: np.ndarray) -> int:
    """Check the framing of ``buf`` against what an index says: batch ``i`` starts at
    ``positions[i]`` (ascending, the first at 0) with ``base_offsets[i]``, and the last
    ends at ``len(buf)``. Returns how many leading batches follow the rule (a reader
    serves those and stops before the first that does not); raises FramingError when
    the first batch does not."""
    n = len(positions)
    if n == 0:
        return 0
    pos = positions.astype(np.int64, copy=False)
    ends = np.empty(n, dtype=np.int64)
    ends[:-1] = pos[1:]
    ends[-1] = len(buf)
    raw = np.frombuffer(buf, dtype=np.uint8)
    whole = pos + _FRAME_BYTES <= len(raw)
    wrong = ~whole
    if whole.any():
        at = pos[whole]
        gathered = raw[at[:, None] + np.arange(_FRAME_BYTES)]
        frames = np.ascontiguousarray(gathered).view(_FRAME_DTYPE).reshape(len(at))
        wrong[whole] = (frames["base_offset"] != base_offsets[whole]) | (
            at + frames["batch_length"] != ends[whole]
        )
    if not wrong.any():
        return n
    bad = int(np.argmax(wrong))
    if bad > 0:
        return bad
    header = read_header(buf, int(pos[bad])) if int(pos[bad]) + HEADER_SIZE <= len(buf) else None
    got = "a cut header" if header is None else (
        f"base offset {header.base_offset}, batch_length {header.batch_length}"
    )
    raise FramingError(
        f"batch at byte {int(pos[bad])} should hold offset {int(base_offsets[bad])} and "
        f"end at byte {int(ends[bad])}; its header says {got}",
        position=int(pos[bad]), first_offset=int(base_offsets[bad]),
    )
