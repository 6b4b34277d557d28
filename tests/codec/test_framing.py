"""The framing rule (codec/framing.py): base offsets and lengths, the header bytes the CRC
does not cover, must follow from the batch before; storage's vectorised check and the
sequential walk agree on where a buffer stops following it."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from logstream.codec import (
    check_frames,
    encode_batch,
    framing,
    stamp_base_offset,
    walk_frames,
)
from logstream.errors import CorruptRecordError


def _answer(batches: int, seed: int) -> tuple[bytearray, np.ndarray, np.ndarray]:
    rng = random.Random(seed)
    parts, positions, bases, pos, offset = [], [], [], 0, 100
    for _ in range(batches):
        count = rng.randint(1, 4)
        b = bytearray(encode_batch([b"v" * rng.randint(0, 9) for _ in range(count)]))
        stamp_base_offset(b, offset)
        parts.append(b)
        positions.append(pos)
        bases.append(offset)
        pos += len(b)
        offset += count
    return bytearray(b"".join(parts)), np.array(positions), np.array(bases)


def _walk_stop(buf: bytes, first: int) -> int:
    """How many batches the sequential walk accepts."""
    n = 0
    try:
        for _ in walk_frames(buf, first):
            n += 1
    except CorruptRecordError:
        pass
    return n


@pytest.mark.parametrize("batches", [5, 40])  # the struct loop and the numpy path
@pytest.mark.parametrize("seed", range(30))
def test_the_index_check_and_the_walk_agree(batches: int, seed: int) -> None:
    buf, positions, bases = _answer(batches, seed)
    rng = random.Random(seed)
    victim = rng.randrange(batches)
    field = rng.choice(["base", "length"])
    at = int(positions[victim])
    if field == "base":
        struct.pack_into("<q", buf, at, int(bases[victim]) + rng.choice([-1, 1, 2**20]))
    else:
        old = struct.unpack_from("<i", buf, at + 8)[0]
        struct.pack_into("<i", buf, at + 8, old + rng.choice([-8, 8, 4096]))
    data = bytes(buf)
    if victim == 0:
        with pytest.raises(CorruptRecordError) as info:
            check_frames(data, positions, bases)
        assert info.value.first_offset == int(bases[0])
    else:
        assert check_frames(data, positions, bases) == victim
    small = framing._first_bad_small(data, positions.tolist(), bases.tolist(), len(data))
    vector = framing._first_bad_numpy(
        data, positions.astype(np.int64), bases.astype(np.int64), len(data)
    )
    assert small == vector == victim
    # The walk stops at the same batch (a length flip may be seen one batch later, when
    # the flipped length still lands inside the buffer).
    assert _walk_stop(data, int(bases[0])) in (victim, victim + 1)


def test_an_intact_answer_passes_both_ways() -> None:
    buf, positions, bases = _answer(40, 1)
    assert check_frames(bytes(buf), positions, bases) == 40
    assert _walk_stop(bytes(buf), int(bases[0]) + 1) == 40  # may start inside the first
