"""acks=flushed: concurrent producers share flushes (group commit); failures never ack."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from broker_helpers import Client

from logstream.broker.group_commit import GroupCommit
from logstream.codec import encode_batch
from logstream.errors import KafkaStorageError, RequestTimedOutError
from logstream.protocol import common_pb2
from logstream.testing.broker import run_broker


def test_concurrent_flushed_producers_get_contiguous_offsets_all_flushed(tmp_path):
    with run_broker(tmp_path / "data", topic_defaults={"flush_policy": "never"}) as b:
        client = Client(b.address)
        client.create_topic("gc", partitions=1)
        producers, per_producer = 8, 15

        def produce(n: int) -> list[int]:
            offsets = []
            for i in range(per_producer):
                res = client.produce(
                    "gc", 0, encode_batch([b"%d-%d" % (n, i)]), acks=common_pb2.ACKS_FLUSHED
                )
                assert res.results[0].error_code == 0, res
                offsets.append(res.results[0].base_offset)
            return offsets

        with ThreadPoolExecutor(producers) as pool:
            results = list(pool.map(produce, range(producers)))
        offsets = sorted(o for r in results for o in r)
        assert offsets == list(range(producers * per_producer))
        plog = b.broker.manager.get_log("gc", 0)
        assert plog.flushed_offset == producers * per_producer
        client.close()


def test_group_commit_one_flush_covers_waiters_that_arrived_during_it():
    gate = threading.Event()
    calls: list[float] = []

    def slow_flush() -> None:
        calls.append(time.monotonic())
        gate.wait(5)

    gc = GroupCommit(slow_flush, "t-0")
    leader = threading.Thread(target=gc.sync, args=(5,))
    leader.start()
    while not calls:
        time.sleep(0.001)
    followers = [threading.Thread(target=gc.sync, args=(5,)) for _ in range(10)]
    for t in followers:
        t.start()
    deadline = time.monotonic() + 5
    while gc.waiting < len(followers) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert gc.waiting == len(followers), "the followers never parked behind the leader"
    gate.set()
    for t in [leader, *followers]:
        t.join(5)
    # The leader's flush may have started before the followers appended, so they need one
    # more flush, which all ten share.
    assert gc.flush_count == 2


def test_flush_failure_is_never_acknowledged():
    def broken() -> None:
        raise KafkaStorageError("disk on fire")

    gc = GroupCommit(broken, "t-0")
    with pytest.raises(KafkaStorageError):
        gc.sync(1)
    with pytest.raises(KafkaStorageError, match="failed earlier"):
        gc.sync(1)


def test_flush_wait_times_out():
    gate = threading.Event()
    gc = GroupCommit(lambda: gate.wait(5), "t-0")
    leader = threading.Thread(target=gc.sync, args=(5,))
    leader.start()
    time.sleep(0.05)
    with pytest.raises(RequestTimedOutError):
        gc.sync(0.1)
    gate.set()
    leader.join()
