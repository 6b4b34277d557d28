"""The queue read caches on a real log: a record acquired right after its admission read it
is cut from the admission's bytes, not read again."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from logstream.broker.queue_reads import FetchCache, batches_for
from logstream.codec import encode_batch
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
