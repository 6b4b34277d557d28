"""The queue read caches on a real log: a record acquired right after its admission read it
is cut from the admission's bytes, not read again."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from logstream.broker.queue_reads import FetchCache, batches_for, read_chunk
from logstream.codec import encode_batch, iter_headers
from logstream.storage import LogManager


def test_a_fetch_cuts_from_the_admissions_chunk_without_reading(tmp_path: Path) -> None:
    mgr = LogManager(tmp_path)
    try:
        mgr.create_topic("t", 1)
        plog = mgr.get_log("t", 0)
        plog.append(encode_batch([b"a", b"b", b"c"]))
        reads, admits = FetchCache(), FetchCache()
        admitted = admits.chunk(plog, 0)  # the admission reads the new batch
        assert admitted is not None and admits.misses == 1
        offsets = np.array([1, 2], np.int64)
        data = batches_for(plog, offsets, reads, admits)
        assert (reads.hits, reads.misses) == (1, 0)  # no second read
        assert data == batches_for(plog, offsets)  # the same bytes a fresh read cuts
        plog.append(encode_batch([b"d"]))  # past the admission's chunk: read as before
        assert batches_for(plog, np.array([3], np.int64), reads, admits) == batches_for(
            plog, np.array([3], np.int64)
        )
        assert reads.misses == 1
    finally:
        mgr.close()


def test_a_produce_hands_its_batch_to_a_caught_up_admission(tmp_path: Path) -> None:
    """A request produced to a partition whose admission read up to the log end is admitted
    from the produce's own bytes (base offset stamped as stored), without a read."""
    from logstream.broker.produce import _offer

    mgr = LogManager(tmp_path)
    try:
        mgr.create_topic("t", 1)
        plog = mgr.get_log("t", 0)
        admits = FetchCache()
        batch = encode_batch([b"a", b"b"])
        _offer(admits, plog, plog.append(batch), batch)
        assert admits.cached(plog, 0) is None  # no group reads it yet: nothing kept
        assert admits.chunk(plog, 0) is not None and admits.misses == 1  # the first admission
        for values in ([b"c"], [b"d", b"e"], [b"f"]):
            batch = encode_batch(values)
            result = plog.append(batch)
            _offer(admits, plog, result, batch)
            c = admits.chunk(plog, result.base_offset)  # the admission of the new batch
            assert c is not None and (c.first, c.end) == (result.base_offset, plog.log_end_offset)
            fresh = read_chunk(plog, result.base_offset)
            assert fresh is not None and c.data == fresh.data  # the bytes as stored
        assert admits.misses == 1  # every later admission found the produced bytes
        wanted = np.array([5], np.int64)
        assert batches_for(plog, wanted, FetchCache(), admits) == batches_for(plog, wanted)
    finally:
        mgr.close()


def test_an_admission_reading_its_backlog_keeps_its_chunk(tmp_path: Path) -> None:
    """An admission behind the log end keeps the chunk it read: new produces do not
    replace it (which would make it read the same bytes again)."""
    from logstream.broker.produce import _offer

    mgr = LogManager(tmp_path)
    try:
        mgr.create_topic("t", 1)
        plog = mgr.get_log("t", 0)
        for _ in range(3):
            plog.append(encode_batch([b"x" * 30_000]))  # two per 64 KiB read
        admits = FetchCache()
        backlog = admits.chunk(plog, 0)
        assert backlog is not None and backlog.end < plog.log_end_offset
        batch = encode_batch([b"new"])
        _offer(admits, plog, plog.append(batch), batch)
        assert admits.cached(plog, 0) is backlog
        assert not admits.offer(plog, 4, 5, b"")  # not where the held chunk ends either
    finally:
        mgr.close()


def test_a_cut_from_a_chunk_of_many_batches_takes_only_the_wanted_ones(tmp_path: Path) -> None:
    mgr = LogManager(tmp_path)
    try:
        mgr.create_topic("t", 1)
        plog = mgr.get_log("t", 0)
        for i in range(50):
            plog.append(encode_batch([b"%d" % i, b"x"]))
        reads = FetchCache()
        for wanted in ([0], [37], [38, 39, 41], [99], [0, 1, 98, 99]):
            offsets = np.array(wanted, np.int64)
            data = batches_for(plog, offsets, reads)
            got = [o for _, h in iter_headers(data) for o in range(h.base_offset, h.next_offset)]
            assert got == wanted
        assert reads.misses == 1  # one 64 KiB read held all 50 batches
    finally:
        mgr.close()
