"""A restart on a nearly full disk: appends that fit still succeed (the open reserves what
fits, not a 16 MiB lead), and the reservation grows again once space appears."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from storage_helpers import make_batch

from logstream.errors import KafkaStorageError
from logstream.storage import LogManager, files
from logstream.storage.io import FileOps


class FreeSpace(FileOps):
    """A disk with ``free`` bytes left: a reservation larger than that is ENOSPC."""

    def __init__(self, free: int) -> None:
        self.free = free

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        if length > self.free:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.free -= length
        super().fallocate(fd, offset, length)


def test_a_restart_on_a_nearly_full_disk_still_appends(tmp_path: Path) -> None:
    batch = make_batch(20, value_size=200)
    with LogManager.open(tmp_path, prefault_pages=False) as mgr:
        mgr.create_topic("t", 1, {"segment_bytes": 64 << 20})
        log = mgr.get_log("t", 0)
        for _ in range(500):  # ~2.2 MB: a reopen wants a lead of as much again
            log.append(batch)
        end = log.log_end_offset
    disk = FreeSpace(free=256 << 10)
    with files.use_file_ops(disk), LogManager.open(tmp_path, prefault_pages=False) as mgr:
        log = mgr.get_log("t", 0)
        assert log.append(batch).base_offset == end  # before: KafkaStorageError, every time
        appended = 1
        with pytest.raises(KafkaStorageError):  # until the space is really gone
            for _ in range(1000):
                log.append(batch)
                appended += 1
        assert 256 << 10 <= appended * len(batch) + 4096 < 512 << 10
        disk.free = 1 << 30  # space appears: appends go on, and the lead grows again
        for _ in range(50):
            log.append(batch)
        assert log.log_end_offset == end + 20 * (appended + 50)
        active = mgr.get_log("t", 0).segments()[-1].active_file
        assert active is not None and active.reserved - active.end >= 1 << 20
