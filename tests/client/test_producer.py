"""Producer behaviour against the in-memory transport: batching, linger, keys, retries,
idempotent de-duplication, bounded buffer, unknown topics."""

from __future__ import annotations

import threading
import time

import pytest

from logstream import errors
from logstream.client import Producer
from logstream.client.partitioner import crc32_partition
from logstream.protocol import log_pb2
from logstream.testing.transport import InMemoryTransport
from logstream.testing.wait import wait_for


@pytest.fixture
def transport() -> InMemoryTransport:
    t = InMemoryTransport()
    t.create_topic("t", partitions=4)
    return t


def test_records_of_one_key_land_in_one_partition_in_order(transport: InMemoryTransport) -> None:
    with Producer(transport) as p:
        futs = [p.send("t", value=b"%d" % i, key=b"k%d" % (i % 9)) for i in range(900)]
        p.flush()
    seen: dict[bytes, list[int]] = {}
    for f, i in zip(futs, range(900), strict=True):
        meta = f.result(0)
        assert meta.partition == crc32_partition(b"k%d" % (i % 9), 4)
    for part in range(4):
        for _, key, value in transport.records("t", part):
            assert key is not None and value is not None
            assert crc32_partition(key, 4) == part
            seen.setdefault(key, []).append(int(value))
    assert sum(len(v) for v in seen.values()) == 900
    assert all(v == sorted(v) for v in seen.values())


def test_keyless_records_stick_to_one_partition_per_batch(transport: InMemoryTransport) -> None:
    with Producer(transport, linger_ms=1000) as p:
        futs = [p.send("t", value=b"x") for _ in range(50)]
        p.flush()
    assert len({f.result().partition for f in futs}) == 1
    assert [f.result().offset for f in futs] == list(range(50))


def test_batch_bytes_splits_batches_and_one_request_carries_many(
    transport: InMemoryTransport,
) -> None:
    with Producer(transport, batch_bytes=1000, linger_ms=50) as p:
        for i in range(200):
            p.send("t", value=b"x" * 84, key=b"%d" % i)
        p.flush()
    batches = sum(len(part.batches) for part in transport.topics["t"])
    assert batches >= 20  # ~100 bytes per record, <= 1000 bytes per batch
    for part in transport.topics["t"]:
        assert all(len(b) <= 1000 + 72 + 16 for b in part.batches)
    assert transport.calls["ProduceStream"] < batches  # several batches per request


def test_linger_sends_without_flush(transport: InMemoryTransport) -> None:
    with Producer(transport, linger_ms=20) as p:
        f = p.send("t", value=b"v", partition=1)
        meta = f.result(timeout=2)
        assert (meta.partition, meta.offset) == (1, 0)


def test_headers_and_explicit_timestamps(transport: InMemoryTransport) -> None:
    with Producer(transport) as p:
        f = p.send("t", b"v", headers={"trace": b"abc"}, partition=0, timestamp_ms=12345)
        g = p.send("t", b"w", partition=0)  # now: decades after 12345 -> a new batch
        assert f.result(2).timestamp_ms == 12345
        assert g.result(2).offset == 1
        bulk = p.send_batch("t", [b"a", b"b"], partition=0, timestamps=[5, 10**12])
        assert [m.timestamp_ms for m in bulk.result(2)] == [5, 10**12]
    assert len(transport.topics["t"][0].batches) == 4


def test_retriable_errors_are_retried_with_the_same_sequence(
    transport: InMemoryTransport,
) -> None:
    transport.fail("ProduceStream", errors.RequestTimedOutError, times=2)
    with Producer(transport, retry_backoff_ms=5) as p:
        futs = [p.send("t", b"%d" % i, partition=0) for i in range(10)]
        assert [f.result(5).offset for f in futs] == list(range(10))
    assert [v for _, _, v in transport.records("t", 0)] == [b"%d" % i for i in range(10)]


def test_lost_answers_are_retried_without_duplicates(transport: InMemoryTransport) -> None:
    transport.break_stream_after(0)  # the first request is written, its answer lost
    with Producer(transport, retry_backoff_ms=5) as p:
        futs = [p.send("t", b"%d" % i, partition=2) for i in range(5)]
        assert [f.result(5).offset for f in futs] == list(range(5))
    assert len(transport.records("t", 2)) == 5  # duplicate detected by sequence


def test_without_idempotence_a_lost_answer_duplicates(transport: InMemoryTransport) -> None:
    transport.break_stream_after(0)
    with Producer(transport, retry_backoff_ms=5, idempotence=False) as p:
        p.send("t", b"x", partition=0).result(5)
    assert len(transport.records("t", 0)) == 2  # why idempotence is the default


def test_non_retriable_errors_fail_the_future(transport: InMemoryTransport) -> None:
    transport.fail("ProduceStream", errors.InvalidRequestError)
    with Producer(transport) as p, pytest.raises(errors.InvalidRequestError):
        p.send("t", b"x", partition=0).result(5)


def test_retries_stop_at_the_retry_limit(transport: InMemoryTransport) -> None:
    transport.fail("ProduceStream", errors.RequestTimedOutError, times=5)
    with (
        Producer(transport, retries=1, retry_backoff_ms=1) as p,
        pytest.raises(errors.RequestTimedOutError),
    ):
        p.send("t", b"x", partition=0).result(5)


def test_unknown_topic_fails_the_future(transport: InMemoryTransport) -> None:
    with Producer(transport, retry_backoff_ms=1) as p:
        f = p.send("missing", b"x")
        with pytest.raises(errors.UnknownTopicOrPartitionError):
            f.result(5)
        with pytest.raises(errors.UnknownTopicOrPartitionError):
            p.send("t", b"x", partition=17).result(5)


def test_too_large_record_fails_without_sending(transport: InMemoryTransport) -> None:
    with Producer(transport) as p, pytest.raises(errors.MessageTooLargeError):
        p.send("t", b"x" * (2 << 20), partition=0).result(1)


def test_full_buffer_blocks_then_raises_a_named_error(transport: InMemoryTransport) -> None:
    transport.fail("ProduceStream", errors.RequestTimedOutError, times=1000)
    p = Producer(transport, buffer_bytes=10_000, max_block_ms=100, retry_backoff_ms=50)
    try:
        start = time.monotonic()
        with pytest.raises(errors.BufferExhaustedError):
            for _ in range(1000):
                p.send("t", b"x" * 100, partition=0)
        assert 0.05 < time.monotonic() - start < 5
        assert issubclass(errors.BufferExhaustedError, errors.RequestTimedOutError)
        assert errors.for_code(1002) is errors.BufferExhaustedError
    finally:
        p.close(timeout=0.2)


def test_send_batch_columnar(transport: InMemoryTransport) -> None:
    with Producer(transport, batch_bytes=2000) as p:
        bulk = p.send_batch("t", [b"%03d" % i for i in range(300)], partition=3)
        metas = bulk.result(5)
        assert [m.offset for m in metas] == list(range(300))
        keyed = p.send_batch("t", [b"a", b"b", b"c"], keys=[b"k1", b"k2", b"k1"])
        km = keyed.result(5)
        assert km[0].partition == km[2].partition == crc32_partition(b"k1", 4)
        assert km[2].offset > km[0].offset
    assert [v for _, _, v in transport.records("t", 3)][:300] == [b"%03d" % i for i in range(300)]


def test_close_is_idempotent_and_send_after_close_fails(transport: InMemoryTransport) -> None:
    p = Producer(transport)
    p.send("t", b"x", partition=0)
    p.close()
    p.close()
    with pytest.raises(errors.ClientClosedError):
        p.send("t", b"y", partition=0)
    assert len(transport.records("t", 0)) == 1


def test_bad_config_is_rejected() -> None:
    t = InMemoryTransport()
    with pytest.raises(errors.InvalidRequiredAcksError):
        Producer(t, acks="some")
    with pytest.raises(errors.InvalidConfigError):
        Producer(t, batch_bytes=4 << 20)
    with pytest.raises(errors.InvalidConfigError):
        Producer(t, compression="snappy")
    with pytest.raises(errors.InvalidConfigError):
        Producer(t, acks="none", idempotence=True)


def test_acks_none_completes_without_offsets(transport: InMemoryTransport) -> None:
    with Producer(transport, acks="none") as p:
        assert p.send("t", b"x", partition=0).result(5).offset == -1
        p.flush()
    time.sleep(0.1)
    assert len(transport.records("t", 0)) == 1


def test_send_batch_bigger_than_the_buffer_waits_and_loses_nothing(
    transport: InMemoryTransport,
) -> None:
    values = [b"%05d" % i + b"x" * 95 for i in range(2_000)]
    with Producer(transport, buffer_bytes=10_000, batch_bytes=2_000, linger_ms=1) as p:
        metas = p.send_batch("t", values, partition=1).result(10)
    assert [m.offset for m in metas] == list(range(2_000))
    assert [v for _, _, v in transport.records("t", 1)] == values


def _gated_stream(
    transport: InMemoryTransport, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, list[int]]:
    """Hold the fake broker's answers until the event is set; record the records per request
    in the order the producer sent the requests (before any answer)."""
    from logstream.client.producer.sender import ProduceStreamPipe
    from logstream.codec import read_header

    sizes: list[int] = []
    real_send = ProduceStreamPipe.send

    def send(pipe: ProduceStreamPipe, request: bytes) -> None:
        sizes.append(
            sum(
                read_header(b, 0).record_count
                for part in log_pb2.ProduceRequest.FromString(request).partitions
                for b in part.batches
            )
        )
        real_send(pipe, request)

    monkeypatch.setattr(ProduceStreamPipe, "send", send)
    return transport.hold_produce_answers(), sizes


def test_small_requests_wait_for_an_answer_instead_of_pipelining(
    transport: InMemoryTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, sizes = _gated_stream(transport, monkeypatch)
    with Producer(transport, linger_ms=0, acks="leader") as p:
        first = p.send("t", b"first", partition=0)
        wait_for(lambda: sizes == [1], timeout=5.0, what="one batch sent")
        later = [p.send("t", b"%d" % i, partition=0) for i in range(5)]
        time.sleep(0.3)
        assert sizes == [1]  # unanswered request: the small ones batch up behind it
        gate.set()
        p.flush(10)
    assert sizes == [1, 5]
    assert [f.result(0).offset for f in [first, *later]] == list(range(6))


def test_records_behind_an_unanswered_request_do_not_wake_the_sender(
    transport: InMemoryTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At linger_ms=0 each record used to wake the sender thread, which found the answer
    still due and went back to sleep: a thread switch per record on the latency path."""
    gate, sizes = _gated_stream(transport, monkeypatch)
    with Producer(transport, linger_ms=0, acks="leader") as p:
        p.send("t", b"first", partition=0)
        wait_for(lambda: sizes == [1], timeout=5.0, what="one batch sent")
        time.sleep(0.05)
        before = p.stats.wakeups
        later = []
        for i in range(20):
            later.append(p.send("t", b"%d" % i, partition=0))
            time.sleep(0.005)  # records trickling in, as at a low rate
        assert p.stats.wakeups - before <= 1
        gate.set()
        p.flush(10)
    assert sizes == [1, 20]
    assert [f.result(0).offset for f in later] == list(range(1, 21))


def test_large_requests_still_pipeline(
    transport: InMemoryTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logstream.client.producer import sender as sender_mod

    gate, sizes = _gated_stream(transport, monkeypatch)
    big = b"x" * sender_mod.PIPELINE_MIN_BYTES
    one = len(big) + 1024  # one record per batch and per request
    with Producer(
        transport, linger_ms=0, max_in_flight=3, batch_bytes=one, max_request_bytes=one
    ) as p:
        futs = [p.send("t", big, partition=0) for _ in range(4)]
        wait_for(lambda: len(sizes) == 3, timeout=5.0, what="three batches sent")
        time.sleep(0.2)
        assert len(sizes) == 3  # max_in_flight, not one at a time
        gate.set()
        p.flush(10)
    assert [f.result(0).offset for f in futs] == [0, 1, 2, 3]


def test_an_old_explicit_timestamp_after_plain_records_opens_a_new_batch(
    transport: InMemoryTransport,
) -> None:
    # The plain records carry the batch's open time (now); a record stamped decades earlier
    # cannot share their batch (int32 deltas): it used to join it and fail the whole batch.
    with Producer(transport, linger_ms=1000) as p:
        plain = [p.send("t", b"p%d" % i, partition=0) for i in range(3)]
        old = p.send("t", b"old", partition=0, timestamp_ms=7)
        p.flush(5)
    assert [f.result(0).offset for f in plain] == [0, 1, 2]
    assert (old.result(0).offset, old.result(0).timestamp_ms) == (3, 7)
    assert len(transport.topics["t"][0].batches) == 2
