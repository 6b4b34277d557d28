"""A topic that does not exist fails fast: the producer remembers the broker's "no such
topic" briefly, and records queued for a topic deleted meanwhile fail together instead of
each retrying until its delivery timeout."""

from __future__ import annotations

import time
from typing import Any

import pytest

from logstream import Admin, Producer, errors
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
