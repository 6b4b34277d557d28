"""A full disk is a named error (KafkaStorageError), never a SIGBUS; earlier data stays readable.

Needs a small tmpfs (``mount -t tmpfs -o size=2m``), so root; skipped otherwise.
"""

from __future__ import annotations

import pytest
from storage_helpers import make_batch, mounted_tmpfs

from logstream.codec import iter_batches
from logstream.errors import KafkaStorageError
from logstream.storage import LogManager


@pytest.fixture
def small_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "mnt", "2m") as mnt:
        yield mnt


def test_disk_full_raises_storage_error_and_keeps_data(small_disk):
    m = LogManager.open(small_disk / "data")
    m.create_topic("t", 1, {"segment_bytes": 256 * 1024, "flush_policy": "never"})
    log = m.get_log("t", 0)
    acked = 0
    with pytest.raises(KafkaStorageError):
        for i in range(10_000):
            acked = log.append(make_batch(20, value_size=200, tag=i)).last_offset + 1
    assert acked > 0
    # The process lives and everything acknowledged reads back intact.
    offsets = [int(o) for b in iter_batches(log.read(0, 1 << 30)) for o in b.offsets]
    assert offsets == list(range(acked))
    with pytest.raises(KafkaStorageError):  # still full: still a named error
        log.append(make_batch(20, value_size=200))
    m.close()
    with LogManager.open(small_disk / "data") as m2:
        log2 = m2.get_log("t", 0)
        assert log2.log_end_offset == acked
        offsets = [int(o) for b in iter_batches(log2.read(0, 1 << 30)) for o in b.offsets]
        assert offsets == list(range(acked))
