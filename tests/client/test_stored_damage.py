"""A Consumer over stored damage (a real broker over real segment files, real gRPC): every
good record before the damage is delivered, then CorruptRecordError names the topic, the
partition and the offsets; a seek past them goes on. Fetch and Subscribe both."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from logstream.client import Consumer
from logstream.codec import encode_batch
from logstream.errors import CorruptRecordError
from logstream.storage import LogManager, TopicConfig
from logstream.testing.broker import run_broker

BATCHES = 20  # of 3 records: offsets 0..59
VICTIM = 5  # the sixth batch: offsets 15..17


def _write(data_dir: Path) -> Path:
    """Write the topic, return the first segment file (sealed: it has later neighbours)."""
    with LogManager.open(data_dir, prefault_pages=False) as mgr:
        mgr.create_topic("t", 1, config=TopicConfig(segment_bytes=2048))
        log = mgr.get_log("t", 0)
        for i in range(BATCHES):
            log.append(encode_batch([b"%d-%d" % (i, k) for k in range(3)]))
    return sorted((data_dir / "t-0").glob("*.log"))[0]


def _victim_position(segment: Path) -> int:
    data = segment.read_bytes()
    pos = 0
    for _ in range(VICTIM):
        pos += struct.unpack_from("<i", data, pos + 8)[0]
    assert struct.unpack_from("<q", data, pos)[0] == 3 * VICTIM
    return pos


def _damage(segment: Path, where: str) -> None:
    pos = _victim_position(segment)
    with open(segment, "r+b") as f:
        if where == "crc":  # a value byte: the client's CRC check finds it
            f.seek(pos + 100)
            byte = f.read(1)
            f.seek(pos + 100)
            f.write(bytes([byte[0] ^ 0x40]))
        else:  # the base offset, outside the CRC: the broker's framing check finds it
            f.seek(pos)
            f.write(struct.pack("<q", 3 * VICTIM + 1000))


def _poll_until_error(c: Consumer, deadline_s: float = 15.0) -> tuple[list[int], BaseException]:
    got: list[int] = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            got.extend(r.offset for r in c.poll(0.2))
        except CorruptRecordError as exc:
            return got, exc
    raise AssertionError(f"no CorruptRecordError; got offsets {got}")


@pytest.mark.parametrize("where", ["crc", "base_offset"])
@pytest.mark.parametrize("min_bytes", [1, 2], ids=["subscribe", "fetch"])
def test_good_records_first_then_a_named_error_then_seek_past(
    tmp_path: Path, where: str, min_bytes: int
) -> None:
    _damage(_write(tmp_path), where)
    with (
        run_broker(tmp_path) as b,
        Consumer(
            b.address,
            auto_offset_reset="earliest",
            fetch_min_bytes=min_bytes,
            fetch_max_wait_ms=100,
        ) as c,
    ):
        c.assign([("t", 0)])
        got, exc = _poll_until_error(c)
        assert got == list(range(3 * VICTIM))  # everything before the damage, once
        assert isinstance(exc, CorruptRecordError)
        assert (exc.topic, exc.partition, exc.first_offset) == ("t", 0, 3 * VICTIM)
        # Found by the consumer (crc) or by the broker (base_offset: the range travels in
        # the answer's corrupt_first_offset/corrupt_last_offset), the end is known.
        assert exc.last_offset == 3 * VICTIM + 2
        with pytest.raises(CorruptRecordError):  # again, until the application seeks
            c.poll(0.5)
        c.seek(("t", 0), exc.last_offset + 1)
        rest: list[int] = []
        deadline = time.monotonic() + 15
        while len(rest) < 3 * (BATCHES - VICTIM - 1) and time.monotonic() < deadline:
            rest.extend(r.offset for r in c.poll(0.2))
        assert rest == list(range(3 * VICTIM + 3, 3 * BATCHES))


@pytest.mark.parametrize("min_bytes", [1, 2], ids=["subscribe", "fetch"])
def test_a_crc_failure_in_the_last_batch_of_an_answer_names_its_last_offset(
    tmp_path: Path, min_bytes: int
) -> None:
    """Answers of one batch each (a tiny max_partition_fetch_bytes): no next batch in the
    answer bounds the damaged one, its own header does (before: last_offset None, so no
    seek past it was known to be safe)."""
    _damage(_write(tmp_path), "crc")
    with (
        run_broker(tmp_path) as b,
        Consumer(
            b.address,
            auto_offset_reset="earliest",
            fetch_min_bytes=min_bytes,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=1,
        ) as c,
    ):
        c.assign([("t", 0)])
        got, exc = _poll_until_error(c)
        assert got == list(range(3 * VICTIM))
        assert isinstance(exc, CorruptRecordError)
        assert (exc.first_offset, exc.last_offset) == (3 * VICTIM, 3 * VICTIM + 2), str(exc)
        c.seek(("t", 0), exc.last_offset + 1)
        rest: list[int] = []
        deadline = time.monotonic() + 15
        while len(rest) < 3 * (BATCHES - VICTIM - 1) and time.monotonic() < deadline:
            rest.extend(r.offset for r in c.poll(0.2))
        assert rest == list(range(3 * VICTIM + 3, 3 * BATCHES))
