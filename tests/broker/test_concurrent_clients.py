"""Many clients at once against one broker process while topics change under them.

Producers share one partition (leader and flushed acks) while fetchers read it, retention
deletes its old segments every few milliseconds, a long-poll waits on a topic that gets
deleted, a topic is deleted and re-created under a producer, and partitions are added under
another. Every answer must be a success or a named error, never UNKNOWN/INTERNAL or
UNKNOWN_SERVER_ERROR; every thread finishes (no deadlock); the broker logs no unexpected
exception (BufferError from a live mmap view would show up there) and stops cleanly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from broker_helpers import Client

from logstream.codec import encode_batch
from logstream.errors import UnknownServerError, UnknownTopicOrPartitionError
from logstream.protocol import admin_pb2, common_pb2
from logstream.testing.broker import BrokerProcess

pytestmark = pytest.mark.slow

RUN_S = 3.0


class Outcomes:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: Counter[tuple[str, int]] = Counter()
        self.problems: list[str] = []

    def code(self, what: str, code: int, message: str = "") -> None:
        with self.lock:
            self.codes[(what, code)] += 1
            if code == UnknownServerError.code:
                self.problems.append(f"{what}: {message}")

    def rpc(self, what: str, call: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return call(*args, **kw)
        except grpc.RpcError as exc:
            with self.lock:
                if exc.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
                    self.problems.append(f"{what}: {exc.code()} {exc.details()}")
                self.codes[(what, -1000 - exc.code().value[0])] += 1
            return None


def test_produce_fetch_retention_and_topic_changes_at_once(tmp_path: Path) -> None:
    config = {
        "auto_create_topics": False,
        "retention_check_interval_ms": 20,
        "flush_check_interval_ms": 10,
        "topic_defaults": {
            "segment_bytes": 8 * 1024,
            "retention_bytes": 32 * 1024,
            "retention_ms": -1,
            "flush_interval_ms": 5,
        },
    }
    with BrokerProcess(tmp_path / "data", **config) as proc:
        admin = Client(proc.address)
        for name, parts in (("c", 1), ("g", 1), ("e", 1)):
            assert admin.create_topic(name, partitions=parts).error_code == 0
        out = Outcomes()
        stop = threading.Event()
        acked: dict[int, list[int]] = {}

        def producer(k: int) -> None:
            c = Client(proc.address)
            acks = common_pb2.ACKS_FLUSHED if k % 2 else common_pb2.ACKS_LEADER
            mine = acked.setdefault(k, [])
            while not stop.is_set():
                batch = encode_batch([b"p%d-%d" % (k, len(mine))] * 20)
                res = out.rpc("produce c", c.produce, "c", 0, batch, batch, acks=acks)
                if res is not None:
                    out.code("produce c", res.error_code, res.error_message)
                    for r in res.results:
                        out.code("produce c batch", r.error_code, r.error_message)
                        if r.error_code == 0:
                            mine.append(r.base_offset)
            c.close()

        def fetcher() -> None:
            c = Client(proc.address)
            offset = 0
            while not stop.is_set():
                res = out.rpc("fetch c", c.fetch, "c", 0, offset, max_bytes=4096, max_wait_ms=50)
                if res is None:
                    continue
                out.code("fetch c", res.error_code, res.error_message)
                # follow the log, jumping to the start after retention or to the end
                offset = res.log_start_offset if res.error_code else res.high_watermark
            c.close()

        partitions_of_g = [1]

        def churn(topic: str, grow: bool) -> None:
            c = Client(proc.address)
            while not stop.is_set():
                part = partitions_of_g[0] if grow else 0  # the partition being added, maybe
                res = out.rpc(f"produce {topic}", c.produce, topic, part, encode_batch([b"x"] * 5))
                if res is not None:
                    out.code(f"produce {topic}", res.error_code, res.error_message)
                    for r in res.results:
                        out.code(f"produce {topic} batch", r.error_code, r.error_message)
                res2 = out.rpc(f"fetch {topic}", c.fetch, topic, part, 0, max_bytes=2048)
                if res2 is not None:
                    out.code(f"fetch {topic}", res2.error_code, res2.error_message)
            c.close()

        threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
        threads += [threading.Thread(target=fetcher) for _ in range(2)]
        threads += [
            threading.Thread(target=churn, args=("e", False)),
            threading.Thread(target=churn, args=("g", True)),
        ]
        for t in threads:
            t.start()

        deadline = time.monotonic() + RUN_S
        rounds = 0
        long_poll_latency: list[float] = []
        while time.monotonic() < deadline:
            rounds += 1
            # a long-poll on a topic that is deleted under it answers at once
            assert admin.create_topic("d").error_code == 0
            result: list[Any] = []

            def long_poll(into: list[Any] = result) -> None:
                into.append(out.rpc("long-poll d", admin.fetch, "d", 0, 0, max_wait_ms=10_000))

            poll = threading.Thread(target=long_poll)
            poll.start()
            time.sleep(0.1)
            deleted_at = time.monotonic()
            res = out.rpc(
                "delete d",
                admin.admin.DeleteTopics,
                admin_pb2.DeleteTopicsRequest(names=["d"]),
                timeout=10,
            )
            assert res is not None and res.topics[0].error_code == 0
            poll.join(10)
            assert not poll.is_alive(), "the long-poll on a deleted topic is stuck"
            long_poll_latency.append(time.monotonic() - deleted_at)
            assert result and result[0] is not None
            assert result[0].error_code == UnknownTopicOrPartitionError.code, result[0]
            # delete and re-create under a producer; grow a topic under another
            out.rpc(
                "delete e",
                admin.admin.DeleteTopics,
                admin_pb2.DeleteTopicsRequest(names=["e"]),
                timeout=10,
            )
            admin.create_topic("e")
            grown = out.rpc(
                "grow g",
                admin.admin.CreatePartitions,
                admin_pb2.CreatePartitionsRequest(name="g", total_count=rounds + 1),
                timeout=10,
            )
            assert grown is not None and grown.result.error_code == 0, grown
            partitions_of_g[0] = rounds + 1
        stop.set()
        for t in threads:
            t.join(30)
        assert not [t for t in threads if t.is_alive()], "a client thread is stuck"

        assert not out.problems, out.problems[:10]
        assert max(long_poll_latency) < 2.0, long_poll_latency
        assert out.codes[("produce c batch", 0)] > 20 and out.codes[("fetch c", 0)] > 20, out.codes
        assert out.codes[("produce g", 0)] > 0 and out.codes[("produce e", 0)] > 0, out.codes
        for offsets in acked.values():  # each producer's acknowledged offsets only grow
            assert offsets == sorted(set(offsets))
        every = sorted(o for offsets in acked.values() for o in offsets)
        assert len(every) == len(set(every)), "two acknowledged batches share an offset"
        desc = admin.admin.DescribeTopics(
            admin_pb2.DescribeTopicsRequest(names=["c", "g"]), timeout=10
        )
        assert desc.topics[0].partitions[0].log_start_offset > 0  # retention really ran
        assert len(desc.topics[1].partitions) == rounds + 1
        admin.close()
        assert proc.terminate() == 0
    log = proc.output()
    for bad in ("Traceback", "unexpectedly", "BufferError", "not all partitions closed"):
        assert bad not in log, log[-5000:]
    assert "clean-shutdown marker written" in log
