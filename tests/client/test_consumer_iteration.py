"""Iterating a consumer (``for record in consumer``): the iterating thread reads its own
``Subscribe`` stream (no hand-over from the prefetch thread), seeks/pauses/closes/``poll``
mid-iteration behave, and the broker's Subscribe heartbeat hands control back when idle.

Against a real broker process on a free loopback port (tests/client/conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from logstream import Admin, Consumer, Producer, TopicPartition, errors
from logstream.client import fetch_answer as fetch_answer_mod
from logstream.protocol import log_pb2, log_pb2_grpc
from logstream.testing.broker import BrokerProcess
from logstream.testing.consumer import wait_fetch_parked, wait_fetcher_idle
from logstream.types import Record

pytestmark = pytest.mark.slow


def _topic(broker: Any, name: str, partitions: int = 1, records: int = 0) -> None:
    with Admin(broker.address) as admin:
        admin.create_topic(name, partitions=partitions)
    if records:
        with Producer(broker.address) as p:
            for i in range(records):
                p.send(name, value=b"%d" % i, partition=i % partitions)
            p.flush()


def _take(it: Iterator[Record], n: int) -> list[Record]:
    return [next(it) for _ in range(n)]


def _values(records: list[Record]) -> list[int]:
    return [int(r.value or b"") for r in records]


def test_iteration_reads_the_stream_on_the_iterating_thread(
    broker: Any, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records produced while the loop waits are decoded on the loop's own thread, not
    handed over by the prefetch thread."""
    _topic(broker, topic_name)
    decoded_on: list[str] = []
    real = fetch_answer_mod.decode_until_damage

    def spying(*args: Any, **kw: Any) -> Any:
        decoded_on.append(threading.current_thread().name)
        return real(*args, **kw)

    monkeypatch.setattr(fetch_answer_mod, "decode_until_damage", spying)
    n = 40

    def produce() -> None:
        assert wait_fetch_parked(c, direct=True)  # the loop reads its own stream now
        with Producer(broker.address, linger_ms=0) as p:
            for i in range(n):
                p.send(topic_name, value=b"%d" % i).result(5)
                time.sleep(0.005)

    got: list[Record] = []
    with Consumer(broker.address, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(topic_name, 0)])
        t = threading.Thread(target=produce)
        t.start()
        threading.Timer(20, c.close).start()  # bounded even if records go missing
        for rec in c:
            got.append(rec)
            if len(got) == n:
                break
        t.join(10)
    assert _values(got) == list(range(n))
    assert [r.offset for r in got] == list(range(n))
    assert decoded_on and set(decoded_on) == {threading.current_thread().name}


def test_seek_and_pause_inside_the_loop(broker: Any, topic_name: str) -> None:
    _topic(broker, topic_name, partitions=2, records=40)  # even values -> p0, odd -> p1
    p0, p1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)
    with Consumer(broker.address, auto_offset_reset="earliest") as c:
        c.assign([p0])
        it = iter(c)
        first = _take(it, 5)
        assert _values(first) == [0, 2, 4, 6, 8]
        c.seek(p0, 1)
        assert _values(_take(it, 3)) == [2, 4, 6]
        c.assign([p0, p1])
        c.seek(p1, 0)
        c.pause([p0])
        rest = _take(it, 20)
        assert {r.partition for r in rest} == {1}
        assert _values(rest) == list(range(1, 40, 2))
        c.resume([p0])
        assert _values(_take(it, 2)) == [8, 10]  # p0 carries on after 2, 4, 6 (offset 3)


def test_poll_while_an_iteration_is_suspended_takes_over_reading(
    broker: Any, topic_name: str
) -> None:
    _topic(broker, topic_name, records=30)
    tp = TopicPartition(topic_name, 0)
    with Consumer(broker.address, auto_offset_reset="earliest") as c:
        c.assign([tp])
        it = iter(c)
        assert [r.offset for r in _take(it, 1)] == [0]  # the iteration holds 1..29 unyielded
        assert c.position(tp) == 1
        polled: list[Record] = []
        deadline = time.monotonic() + 10
        while len(polled) < 10 and time.monotonic() < deadline:
            polled.extend(c.poll(0.5, max_records=10 - len(polled)))
        assert [r.offset for r in polled] == list(range(1, 11))
        # the iteration picks up after what poll() returned: no record twice, none lost
        assert [r.offset for r in _take(it, 19)] == list(range(11, 30))


def test_a_second_iteration_takes_over_from_a_suspended_one(broker: Any, topic_name: str) -> None:
    _topic(broker, topic_name, records=30)
    with Consumer(broker.address, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(topic_name, 0)])
        bound = threading.Timer(20, c.close)  # a stalled partition fails, not hangs
        bound.start()
        first = iter(c)
        assert [r.offset for r in _take(first, 5)] == list(range(5))
        second = iter(c)  # `first` still holds 5..29, taken but not yielded
        assert [r.offset for r in _take(second, 25)] == list(range(5, 30))
        with Producer(broker.address) as p:
            p.send(topic_name, value=b"30").result(5)
        assert [r.offset for r in _take(first, 1)] == [30]  # and back again
        bound.cancel()


def test_breaking_out_hands_reading_back_to_poll(broker: Any, topic_name: str) -> None:
    _topic(broker, topic_name, records=10)
    tp = TopicPartition(topic_name, 0)
    with Consumer(broker.address, auto_offset_reset="earliest") as c:
        c.assign([tp])
        for rec in c:
            if rec.offset == 2:
                break
        with Producer(broker.address) as p:
            p.send(topic_name, value=b"10").result(5)
        got: list[Record] = []
        deadline = time.monotonic() + 10
        while len(got) < 8 and time.monotonic() < deadline:
            got.extend(c.poll(0.5))
    assert [r.offset for r in got] == list(range(3, 11))


def test_pausing_with_a_full_buffer_keeps_the_other_partitions_flowing(
    broker: Any, topic_name: str
) -> None:
    """pause() frees room in a full prefetch buffer: the prefetcher, waiting for room,
    must be woken, or the unpaused partitions stop (poll, not iteration)."""
    _topic(broker, topic_name, partitions=2)
    n = 2000
    with Producer(broker.address, linger_ms=0) as p:
        for i in range(n):
            p.send(topic_name, value=b"x" * 200, partition=i % 2)
            if i % 50 == 0:
                p.flush()
    p0, p1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)
    with Consumer(
        broker.address,
        auto_offset_reset="earliest",
        max_buffer_bytes=8192,
        fetch_max_bytes=4096,
        max_partition_fetch_bytes=2048,
    ) as c:
        c.assign([p0, p1])
        got = c.poll(timeout=5, max_records=1)
        deadline = time.monotonic() + 5
        while not c._state.buffer.full:
            assert time.monotonic() < deadline, "the buffer never filled"
            time.sleep(0.01)
        assert wait_fetcher_idle(c)  # the prefetcher now waits for room
        c.pause([p0])
        seen = {r.offset for r in got if r.partition == 1}
        deadline = time.monotonic() + 15
        while len(seen) < n // 2 and time.monotonic() < deadline:
            seen |= {r.offset for r in c.poll(timeout=0.2) if r.partition == 1}
    assert seen == set(range(n // 2))


def test_close_from_another_thread_ends_an_idle_iteration(broker: Any, topic_name: str) -> None:
    _topic(broker, topic_name)
    c = Consumer(broker.address, auto_offset_reset="latest", fetch_max_wait_ms=30_000)
    c.assign([TopicPartition(topic_name, 0)])
    threading.Timer(0.5, c.close).start()
    t0 = time.monotonic()
    assert list(c) == []
    assert time.monotonic() - t0 < 5  # not the 30 s heartbeat: the stream was cancelled


def test_iteration_raises_a_fetch_error_and_the_consumer_recovers(
    broker: Any, topic_name: str
) -> None:
    _topic(broker, topic_name, records=5)
    tp = TopicPartition(topic_name, 0)
    with Consumer(broker.address, auto_offset_reset="error") as c:
        c.assign([tp])
        with pytest.raises(errors.OffsetOutOfRangeError):
            next(iter(c))  # no position and no reset policy
        c.seek(tp, 100)
        with pytest.raises(errors.OffsetOutOfRangeError):
            next(iter(c))
        c.seek(tp, 3)
        assert [r.offset for r in _take(iter(c), 2)] == [3, 4]


def test_iteration_survives_a_broker_restart(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "data", log_level="WARNING") as b:
        _topic(b, "r", records=3)
        got: list[Record] = []
        with Consumer(b.address, auto_offset_reset="earliest", retry_backoff_ms=50) as c:
            c.assign([TopicPartition("r", 0)])
            it = iter(c)
            got += _take(it, 3)
            b.restart(kill=True)
            with Producer(b.address) as p:
                p.send("r", value=b"3").result(10)
            threading.Timer(30, c.close).start()  # bounded
            got += _take(it, 1)
    assert [r.offset for r in got] == [0, 1, 2, 3]


def test_group_member_iterating_gets_its_assignment_and_gives_it_up(
    broker: Any, topic_name: str
) -> None:
    """A member blocked in iteration applies a rebalance: the heartbeat thread wakes it."""
    _topic(broker, topic_name, partitions=2, records=20)
    group = f"g-{topic_name}"
    a = Consumer(broker.address, group=group, auto_offset_reset="earliest")
    a.subscribe([topic_name])
    it = iter(a)
    first = _take(it, 20)
    assert {r.partition for r in first} == {0, 1}
    b = Consumer(broker.address, group=group, auto_offset_reset="earliest")
    try:
        b.subscribe([topic_name])
        done = threading.Event()

        def drive_a() -> None:  # a keeps iterating (blocked on its stream) while b joins
            for _ in it:
                if done.is_set():
                    return

        t = threading.Thread(target=drive_a, daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(b.assignment()) < 1:
            b.poll(0.2)
        assert len(b.assignment()) == 1 and len(a.assignment()) == 1
        assert a.assignment() | b.assignment() == {
            TopicPartition(topic_name, 0),
            TopicPartition(topic_name, 1),
        }
        done.set()
    finally:
        b.close()
        a.close()


# -- the broker's Subscribe heartbeat ------------------------------------------------------


def _subscribe(broker: Any, topic: str, heartbeat_ms: int, seconds: float) -> list[Any]:
    """Raw Subscribe on an idle partition for ``seconds``; the messages received."""
    with grpc.insecure_channel(broker.address) as channel:
        stub = log_pb2_grpc.LogStub(channel)
        call = stub.Subscribe(
            log_pb2.SubscribeRequest(
                partitions=[log_pb2.FetchPartition(topic=topic, partition=0, offset=0)],
                heartbeat_ms=heartbeat_ms,
            )
        )
        timer = threading.Timer(seconds, call.cancel)
        timer.start()
        got = []
        try:
            for msg in call:
                got.append(msg)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.CANCELLED
        finally:
            timer.cancel()
        return got


def test_subscribe_heartbeat_sends_empty_messages_only_when_asked(
    broker: Any, topic_name: str
) -> None:
    _topic(broker, topic_name)
    beats = _subscribe(broker, topic_name, heartbeat_ms=100, seconds=1.0)
    assert 4 <= len(beats) <= 11
    assert all(len(m.partitions) == 0 for m in beats)
    assert _subscribe(broker, topic_name, heartbeat_ms=0, seconds=0.5) == []


def test_subscribe_heartbeat_is_never_more_frequent_than_the_minimum(
    broker: Any, topic_name: str
) -> None:
    from logstream.broker.servicers import MIN_HEARTBEAT_MS

    _topic(broker, topic_name)
    beats = _subscribe(broker, topic_name, heartbeat_ms=1, seconds=0.5)
    assert 0 < len(beats) <= 500 / MIN_HEARTBEAT_MS + 2
