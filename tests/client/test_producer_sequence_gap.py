"""An idempotent Producer recovers by itself after one batch fails for good (a full disk):
it bumps its epoch and restarts its sequences, instead of failing every later send to
that partition with OutOfOrderSequenceError. In-process broker, real gRPC, storage's
FileOps seam making the disk full on demand."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from logstream.client import Admin, Consumer, Producer
from logstream.errors import KafkaStorageError
from logstream.storage import files
from logstream.storage.io import FileOps
from logstream.testing.broker import run_broker


class SwitchableDisk(FileOps):
    """Every reservation fails with ENOSPC while ``full``."""

    full = False

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().fallocate(fd, offset, length)


@pytest.mark.parametrize("name", ["", "named-producer"])
def test_one_failed_batch_does_not_poison_the_partition(tmp_path: Path, name: str) -> None:
    disk = SwitchableDisk()
    with files.use_file_ops(disk), run_broker(tmp_path) as b:
        with Admin(b.address) as admin:
            admin.create_topic("t", 1, {"segment_bytes": 1024})
        with Producer(b.address, linger_ms=0, producer_name=name) as p:
            before = b"before".ljust(900, b".")  # the segment is full after it
            assert p.send("t", value=before, partition=0).result(10).offset == 0
            disk.full = True  # the next append rolls: its new segment needs a reservation
            with pytest.raises(KafkaStorageError):
                p.send("t", value=b"lost", partition=0).result(10)
            disk.full = False  # space freed
            results = [p.send("t", value=b"after-%d" % i, partition=0) for i in range(5)]
            offsets = [r.result(10).offset for r in results]  # before: OutOfOrderSequence
        assert offsets == [1, 2, 3, 4, 5]
        with Consumer(b.address, auto_offset_reset="earliest") as c:
            c.assign([("t", 0)])
            got: list[bytes | None] = []
            for _ in range(50):
                got.extend(r.value for r in c.poll(0.2))
                if len(got) >= 6:
                    break
        assert got == [before] + [b"after-%d" % i for i in range(5)]
