"""End to end against a real broker process on loopback: round trips, seeks, long poll,
restart, SIGKILL during an idempotent produce stream, broker down."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from logstream import Admin, Consumer, Producer, TopicPartition, errors
from logstream.client.partitioner import crc32_partition
from logstream.testing.consumer import wait_fetch_parked
from logstream.testing.wait import wait_for
from logstream.types import Record

pytestmark = pytest.mark.slow


def _consume_all(address: str, topic: str, partitions: int, expect: int) -> list[Record]:
    out: list[Record] = []
    with Consumer(address, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(topic, p) for p in range(partitions)])
        deadline = time.monotonic() + 20
        while len(out) < expect and time.monotonic() < deadline:
            out.extend(c.poll(0.5, max_records=10_000))
        out.extend(c.poll(0.2))  # nothing more should arrive
    return out


def test_round_trip_many_keys_keeps_per_key_order(broker: Any, topic_name: str) -> None:
    with Admin(broker.address) as admin:
        admin.create_topic(topic_name, partitions=3)
        assert any(t.name == topic_name and t.partitions == 3 for t in admin.list_topics())
    n = 20_000
    with Producer(broker.address) as p:
        futs = [p.send(topic_name, value=b"%d" % i, key=b"user-%d" % (i % 97)) for i in range(n)]
        p.flush()
    metas = [f.result(0) for f in futs]
    for i, m in enumerate(metas):
        assert m.partition == crc32_partition(b"user-%d" % (i % 97), 3)
    records = _consume_all(broker.address, topic_name, 3, n)
    assert len(records) == n
    by_key: dict[bytes, list[int]] = {}
    for r in records:
        assert r.key is not None and r.value is not None
        assert r.partition == crc32_partition(r.key, 3)
        by_key.setdefault(r.key, []).append(int(r.value))
    assert all(v == sorted(v) for v in by_key.values())
    # the offsets the producer was told are the offsets the consumer sees
    found = {(r.partition, r.offset): int(r.value) for r in records}  # type: ignore[arg-type]
    assert all(found[(m.partition, m.offset)] == i for i, m in enumerate(metas))
    with Admin(broker.address) as admin:
        (desc,) = admin.describe_topics([topic_name])
        assert sum(p.log_end_offset for p in desc.partitions) == n


def test_columnar_produce_and_replay(broker: Any, topic_name: str) -> None:
    with Admin(broker.address) as admin:
        admin.create_topic(topic_name, partitions=1)
    values = [b"%06d" % i for i in range(50_000)]
    with Producer(broker.address, compression="lz4") as p:
        p.send_batch(topic_name, values).result(30)
    with Consumer(broker.address, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(topic_name, 0)])
        got: list[bytes | None] = []
        offsets: list[int] = []
        deadline = time.monotonic() + 20
        while len(got) < len(values) and time.monotonic() < deadline:
            cols = c.poll_batch(0.5)
            got.extend(cols.values())
            offsets.extend(cols.offsets.tolist())
    assert got == values
    assert offsets == list(range(len(values)))


def test_seek_by_offset_and_by_timestamp(broker: Any, topic_name: str) -> None:
    tp = TopicPartition(topic_name, 0)
    with Admin(broker.address) as admin:
        admin.create_topic(topic_name, partitions=1)
        with Producer(broker.address) as p:
            for i in range(300):
                p.send(topic_name, b"%d" % i, timestamp_ms=1_700_000_000_000 + i * 10)
        offs = admin.list_offsets({tp: "earliest"}), admin.list_offsets({tp: "latest"})
        assert offs == ({tp: 0}, {tp: 300})
        # The broker answers at batch granularity (its time index is per batch): the
        # offset is at or before the first record with timestamp >= t, never after it.
        by_time = admin.list_offsets({tp: 1_700_000_000_000 + 1234})[tp]
        assert 0 <= by_time <= 124
    with Consumer(broker.address) as c:
        c.assign([tp])
        c.seek(tp, 42)
        recs = c.poll(5, max_records=3)
        assert [r.offset for r in recs] == [42, 43, 44]
        assert recs[0].timestamp_ms == 1_700_000_000_420
        c.seek_to_timestamp(1_700_000_000_000 + 2000)
        first = c.poll(5, max_records=1)[0]
        assert first.offset <= 200
        assert c.offsets_for_times({tp: 1_700_000_000_000 + 5000}) == {tp: 300}


@pytest.mark.serial  # timing-sensitive: run alone by `make test` (docs/decisions/0040)
def test_long_poll_wakes_up_on_produce(broker: Any, topic_name: str) -> None:
    tp = TopicPartition(topic_name, 0)
    with Admin(broker.address) as admin:
        admin.create_topic(topic_name, partitions=1)
    with Consumer(broker.address, fetch_max_wait_ms=10_000) as c, Producer(broker.address) as p:
        c.assign([tp])
        c.position(tp)
        assert wait_fetch_parked(c)  # the fetcher's stream is open, waiting for data
        sent_at = time.monotonic()
        p.send(topic_name, b"wake up").result(5)
        recs = c.poll(5.0)
        latency = time.monotonic() - sent_at
    assert [r.value for r in recs] == [b"wake up"]
    assert latency < 1.0


def test_unknown_topic_fails_the_future_and_admin_errors_are_typed(
    broker: Any, topic_name: str
) -> None:
    with (
        Producer(broker.address, retry_backoff_ms=10) as p,
        pytest.raises(errors.UnknownTopicOrPartitionError),
    ):
        p.send(topic_name + "-missing", b"x").result(10)
    with Admin(broker.address) as admin:
        admin.create_topic(topic_name)
        with pytest.raises(errors.TopicAlreadyExistsError):
            admin.create_topic(topic_name)
        with pytest.raises(errors.UnknownTopicOrPartitionError):
            admin.describe_topics([topic_name + "-missing"])
        admin.add_partitions(topic_name, 3)
        assert len(admin.describe_topics([topic_name])[0].partitions) == 3
        cfg = admin.alter_topic_config(topic_name, set={"retention_ms": 60_000})
        assert cfg["retention_ms"] == "60000"
        admin.delete_topic(topic_name)
        assert topic_name not in {t.name for t in admin.list_topics()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_broker_down_is_a_fast_clear_error() -> None:
    address = f"127.0.0.1:{_free_port()}"
    start = time.monotonic()
    with (
        Admin(address, request_timeout_ms=5_000) as admin,
        pytest.raises(errors.BrokerNotAvailableError, match=r"127\.0\.0\.1"),
    ):
        admin.list_topics()
    with (
        Producer(address, max_block_ms=500, retry_backoff_ms=10) as p,
        pytest.raises(errors.BrokerNotAvailableError),
    ):
        p.send("t", b"x").result(5)
    assert time.monotonic() - start < 5


def test_restart_serves_all_data_again(tmp_path: Any) -> None:
    from logstream.testing.broker import BrokerProcess

    proc = BrokerProcess(tmp_path / "data", log_level="WARNING").start()
    try:
        with Admin(proc.address) as admin:
            admin.create_topic("r", partitions=2)
        with Producer(proc.address) as p:
            for i in range(5_000):
                p.send("r", b"%d" % i, key=b"%d" % (i % 13))
        before = _consume_all(proc.address, "r", 2, 5_000)
        assert proc.restart().address  # SIGTERM, same port, same data
        after = _consume_all(proc.address, "r", 2, 5_000)
        assert [(r.partition, r.offset, r.key, r.value) for r in after] == [
            (r.partition, r.offset, r.key, r.value) for r in before
        ]
        proc.restart(kill=True)  # SIGKILL: recovery, still every acknowledged record
        assert len(_consume_all(proc.address, "r", 2, 5_000)) == 5_000
    finally:
        proc.terminate()


def test_sigkill_during_idempotent_stream_keeps_acked_records_exactly_once(
    tmp_path: Any,
) -> None:
    from logstream.testing.broker import BrokerProcess

    proc = BrokerProcess(tmp_path / "data", log_level="WARNING").start()
    try:
        with Admin(proc.address) as admin:
            admin.create_topic("k", partitions=2)
        acked: list[tuple[int, int, bytes]] = []
        failed: list[BaseException] = []
        lock = threading.Lock()
        stop = threading.Event()

        def on_done(value: bytes) -> Any:
            def cb(f: Any) -> None:
                exc = f.exception()
                with lock:
                    if exc is None:
                        m = f.result()
                        acked.append((m.partition, m.offset, value))
                    else:
                        failed.append(exc)

            return cb

        p = Producer(proc.address, linger_ms=2, batch_bytes=4096, retry_backoff_ms=20)
        sent = 0

        def produce() -> None:
            nonlocal sent
            while not stop.is_set() and sent < 200_000:
                value = b"%07d" % sent
                p.send("k", value, key=b"%d" % (sent % 5)).add_done_callback(on_done(value))
                sent += 1
                if sent % 500 == 0:
                    time.sleep(0.002)

        th = threading.Thread(target=produce)
        th.start()
        wait_for(lambda: len(acked) >= 10_000, timeout=30, what="acks before the kill")
        proc.kill()  # mid-stream: in-flight batches lose their answers
        time.sleep(0.5)  # down for a while: sends queue up and retry
        proc.restart()
        at_restart = len(acked)
        wait_for(lambda: len(acked) >= at_restart + 10_000, timeout=30, what="acks after restart")
        stop.set()
        th.join()
        p.flush(30)
        p.close()
        assert not failed, failed[:3]
        assert len(acked) == sent
        records = _consume_all(proc.address, "k", 2, sent)
        values = [r.value for r in records]
        assert len(values) == len(set(values)) == sent  # every record exactly once
        for part in (0, 1):
            # per-partition order is send order
            mine = [int(r.value) for r in records if r.partition == part]  # type: ignore[arg-type]
            assert mine == sorted(mine)
        stored = {(r.partition, r.offset): r.value for r in records}
        assert all(stored[(pt, off)] == v for pt, off, v in acked)
    finally:
        proc.terminate()
