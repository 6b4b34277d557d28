"""Committed offsets across a real crash: SIGKILL the broker while groups commit as fast as
they can (~2,000 commits a second) and ``__consumer_offsets`` checkpoints at a low threshold
on a 10 ms timer (~80 checkpoints a second, so some kills land inside one). After each
restart every group's committed offsets are the last ones the broker acknowledged (or the
one in flight when it died), never older, never a mix of two commits. Marked slow."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from logstream.client import Admin, Consumer, Producer
from logstream.codec import iter_batches
from logstream.coordinator.offsets import KEY_CHECKPOINT, OFFSETS_TOPIC, decode_key
from logstream.errors import LogstreamError
from logstream.storage import DirectorySnapshot
from logstream.testing.broker import BrokerProcess
from logstream.types import OffsetAndMetadata, TopicPartition

pytestmark = pytest.mark.slow

GROUPS = [f"g{i}" for i in range(4)]
PARTITIONS = 4
CYCLES = 5


RECORDS = 500  # per partition: a commit may not pass the log end


def _offsets(i: int) -> dict[TopicPartition, OffsetAndMetadata]:
    """Commit number ``i`` of a group: every partition's offset derived from ``i``, and ``i``
    in the metadata (offsets wrap around; the metadata says which commit it was)."""
    return {
        TopicPartition("t", p): OffsetAndMetadata((i * 7 + p) % RECORDS, str(i))
        for p in range(PARTITIONS)
    }


def _commit_loop(
    address: str,
    group: str,
    start: int,
    stop: threading.Event,
    acked: dict[str, int],
    attempted: dict[str, int],
) -> None:
    """Commit numbers start+1, start+2, ... as fast as the broker answers, until it dies."""
    with Consumer(address, group=group, request_timeout_ms=3000, retry_backoff_ms=50) as c:
        i = start
        while not stop.is_set():
            i += 1
            attempted[group] = i
            try:
                c.commit(_offsets(i))
            except LogstreamError:
                return  # the broker is gone
            acked[group] = i


def _checkpoints(data_dir: Path) -> int:
    mgr = DirectorySnapshot.open(data_dir)
    try:
        found = 0
        for p in range(64):
            try:
                log = mgr.get_log(OFFSETS_TOPIC, p)
            except LogstreamError:
                break  # past the last partition of the offsets topic
            pos = log.log_start_offset
            while pos < log.log_end_offset:
                data = bytes(log.read(pos, 1 << 20))
                if not data:
                    break
                for batch in iter_batches(data):
                    for key in batch.key_list():
                        if key is not None and decode_key(key)[0] == KEY_CHECKPOINT:
                            found += 1
                    pos = batch.header.base_offset + batch.header.record_count
        return found
    finally:
        mgr.close()


def test_committed_offsets_survive_sigkill_during_checkpoints(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with BrokerProcess(
        data_dir,
        log_level="WARNING",
        offsets_compact_min_records=20,
        group_expiry_check_interval_ms=10,  # the timer that runs checkpoints: often
    ) as b:
        with Admin(b.address) as admin:
            admin.create_topic("t", partitions=PARTITIONS)
        with Producer(b.address) as p:
            for i in range(RECORDS * PARTITIONS):
                p.send("t", b"x", partition=i % PARTITIONS)
        for cycle in range(CYCLES):
            acked = dict.fromkeys(GROUPS, 0)
            attempted = dict.fromkeys(GROUPS, 0)
            stop = threading.Event()

            start = cycle * 100_000
            threads = [
                threading.Thread(
                    target=_commit_loop,
                    args=(b.address, g, start, stop, acked, attempted),
                    daemon=True,
                )
                for g in GROUPS
            ]
            for t in threads:
                t.start()
            time.sleep(0.8)  # hundreds of commits: a checkpoint every few dozen records
            b.restart(kill=True)  # SIGKILL, mid-commit
            stop.set()
            for t in threads:
                t.join(15)
            assert all(acked[g] > start for g in GROUPS), acked  # every group committed
            for g in GROUPS:
                with Consumer(b.address, group=g) as c:
                    got = c.committed(list(_offsets(0)))
                i = int(got[TopicPartition("t", 0)].metadata)  # type: ignore[union-attr]
                assert got == _offsets(i), (g, got)  # one commit, whole
                assert acked[g] <= i <= attempted[g], (g, i, acked[g], attempted[g])
    assert _checkpoints(data_dir) >= 10 * CYCLES  # checkpoints all along, not one per cycle
