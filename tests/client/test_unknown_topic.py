"""A topic that does not exist fails fast: the producer remembers the broker's "no such
topic" briefly, and records queued for a topic deleted meanwhile fail together instead of
each retrying until its delivery timeout. A consumer assigned a missing topic (or one
deleted while it reads) raises UnknownTopicOrPartitionError from poll after a short grace,
and reads the topic once it is created."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from logstream import Admin, Consumer, Producer, TopicPartition, errors
from logstream.client.metadata import Metadata


@pytest.mark.serial  # timing-sensitive: run alone by `make test` (docs/decisions/0040)
def test_sends_to_a_missing_topic_fail_at_once_after_the_first(broker: Any) -> None:
    with Producer(broker.address) as producer:
        first = producer.send("missing-topic", b"x")
        started = time.monotonic()
        futures = [producer.send("missing-topic", b"x") for _ in range(50)]
        elapsed = time.monotonic() - started
    assert isinstance(first.exception(0), errors.UnknownTopicOrPartitionError)
    assert all(isinstance(f.exception(0), errors.UnknownTopicOrPartitionError) for f in futures)
    # each would otherwise pay a round of metadata retries (~0.7 s)
    assert elapsed < 0.5, f"50 sends to a known-missing topic took {elapsed:.2f}s"


def test_a_topic_created_after_the_negative_answer_is_found(broker: Any, topic_name: str) -> None:
    now = [0.0]
    with Producer(broker.address) as producer, Admin(broker.address) as admin:
        meta = Metadata(producer._transport, timeout=5.0, unknown_ttl_s=2.0, clock=lambda: now[0])
        try:
            meta.fetch(topic_name)
        except errors.UnknownTopicOrPartitionError:
            pass
        assert isinstance(meta.unknown(topic_name), errors.UnknownTopicOrPartitionError)
        admin.create_topic(topic_name, partitions=2)
        now[0] = 1.9
        assert meta.unknown(topic_name) is not None  # still trusted
        now[0] = 2.0
        assert meta.unknown(topic_name) is None
        assert meta.fetch(topic_name) == 2


def test_records_queued_for_a_deleted_topic_fail_together(broker: Any, topic_name: str) -> None:
    with Admin(broker.address) as admin:
        admin.create_topic(topic_name, partitions=2)
    with Producer(broker.address, delivery_timeout_ms=60_000, linger_ms=50) as producer:
        producer.send(topic_name, b"before").result(10)
        with Admin(broker.address) as admin:
            admin.delete_topic(topic_name)
        started = time.monotonic()
        futures = [producer.send(topic_name, b"%d" % i, key=b"%d" % i) for i in range(2000)]
        failures = [f.exception(30) for f in futures]
        elapsed = time.monotonic() - started
    assert all(isinstance(e, errors.UnknownTopicOrPartitionError) for e in failures), {
        type(e).__name__ for e in failures
    }
    assert elapsed < 10, f"queued records took {elapsed:.1f}s to fail"


def _poll_until_error(consumer: Consumer, seconds: float) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    while time.monotonic() - started < seconds:  # bounded
        try:
            consumer.poll(0.2)
        except errors.LogstreamError as exc:
            return exc, time.monotonic() - started
    return None, seconds


@pytest.mark.parametrize("min_bytes", [1, 1000])  # Subscribe stream, long-poll Fetch
def test_a_consumer_assigned_a_missing_topic_says_so_then_reads_it_once_created(
    broker: Any, topic_name: str, min_bytes: int
) -> None:
    # poll returned [] for request_timeout_ms (30 s) before saying anything: a mistyped
    # topic looked like a quiet one. Now: after about a second, then once a second.
    tp = TopicPartition(topic_name, 0)
    with Consumer(broker.address, auto_offset_reset="earliest", fetch_min_bytes=min_bytes,
                  fetch_max_wait_ms=100) as consumer:  # fmt: skip
        consumer.assign([tp])
        err, after = _poll_until_error(consumer, 10)
        assert isinstance(err, errors.UnknownTopicOrPartitionError), err
        assert after < 5, after
        assert topic_name in str(err)
        Admin(broker.address).create_topic(topic_name)
        Producer(broker.address).send(topic_name, b"now").result(10)
        got: list[bytes | None] = []
        for _ in range(50):  # bounded: the grace's next retry finds it
            try:
                got += [r.value for r in consumer.poll(0.2)]
            except errors.UnknownTopicOrPartitionError:
                continue  # told before the retry that found it
            if got:
                break
        assert got == [b"now"]


@pytest.mark.parametrize("how", ["poll", "iterate", "fetch"])
def test_a_topic_deleted_under_a_following_consumer_is_raised_not_waited_on_forever(
    broker: Any, topic_name: str, how: str
) -> None:
    # A Subscribe stream (poll and iteration) never raised at all: each retry's answer (the
    # error) restarted the "unreachable for request_timeout_ms" clock.
    admin = Admin(broker.address)
    admin.create_topic(topic_name)
    Producer(broker.address).send(topic_name, b"first").result(10)
    min_bytes = 1000 if how == "fetch" else 1
    with Consumer(broker.address, auto_offset_reset="earliest", fetch_min_bytes=min_bytes,
                  fetch_max_wait_ms=100) as consumer:  # fmt: skip
        consumer.assign([TopicPartition(topic_name, 0)])
        first = []
        for _ in range(50):  # bounded
            first += consumer.poll(0.2)
            if first:
                break
        assert [r.value for r in first] == [b"first"]
        admin.delete_topic(topic_name)
        if how == "iterate":
            started = time.monotonic()
            stop = threading.Timer(10, consumer.close)  # bounded: ends a silent iteration
            stop.start()
            try:
                with pytest.raises(errors.UnknownTopicOrPartitionError):
                    for _record in consumer:
                        pass
            finally:
                stop.cancel()
            after = time.monotonic() - started
        else:
            err, after = _poll_until_error(consumer, 10)
            assert isinstance(err, errors.UnknownTopicOrPartitionError), err
        assert after < 5, after


@pytest.mark.parametrize("seek", [False, True])  # position by auto_offset_reset, or given
def test_a_missing_topic_does_not_stop_the_other_assigned_partitions(
    broker: Any, topic_name: str, seek: bool
) -> None:
    # With one assigned topic missing, the others were never read: the fetcher retried the
    # missing partition's position lookup (which also failed the others' lookups) and never
    # got to fetching. poll only raised the missing topic, once a second.
    missing = f"{topic_name}-later"
    Admin(broker.address).create_topic(topic_name)
    with Producer(broker.address) as p:
        p.send(topic_name, b"here", partition=0).result(10)
    here, later = TopicPartition(topic_name, 0), TopicPartition(missing, 0)
    with Consumer(broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([here, later])
        if seek:
            consumer.seek(here, 0)
        got: list[bytes | None] = []
        told = 0
        for _ in range(50):  # bounded: ~10 s
            try:
                got += [r.value for r in consumer.poll(0.2)]
            except errors.UnknownTopicOrPartitionError as exc:
                assert missing in str(exc)
                told += 1
            if got and told:
                break
        assert got == [b"here"] and told, (got, told)
        Admin(broker.address).create_topic(missing)  # and it is read once it exists
        Producer(broker.address).send(missing, b"later", partition=0).result(10)
        for _ in range(50):  # bounded
            try:
                got += [r.value for r in consumer.poll(0.2)]
            except errors.UnknownTopicOrPartitionError:
                continue
            if len(got) == 2:
                break
        assert got == [b"here", b"later"]


def test_iteration_reads_the_other_partitions_while_a_topic_is_missing(
    broker: Any, topic_name: str
) -> None:
    # Iteration reads its own stream on the application thread: it too retried the missing
    # partition's reset and never opened the stream over the others.
    Admin(broker.address).create_topic(topic_name)
    with Producer(broker.address) as p:
        p.send(topic_name, b"here", partition=0).result(10)
    with Consumer(broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic_name, 0), TopicPartition(f"{topic_name}-x", 0)])
        stop = threading.Timer(10, consumer.close)  # bounded: ends a silent iteration
        stop.start()
        got: list[bytes | None] = []
        told = 0
        try:
            for want in (1, 2):  # "here", then "later" once its topic exists
                for _ in range(30):  # bounded
                    try:
                        for record in consumer:
                            got.append(record.value)
                            break
                    except errors.UnknownTopicOrPartitionError:
                        told += 1
                    if len(got) == want:
                        break
                assert len(got) == want, (got, told)
                if want == 1:
                    Admin(broker.address).create_topic(f"{topic_name}-x")
                    Producer(broker.address).send(f"{topic_name}-x", b"later").result(10)
        finally:
            stop.cancel()
    assert got == [b"here", b"later"], (got, told)
