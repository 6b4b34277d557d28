"""QueueMessage objects against a real broker (client/queue_message.py, queue_records.py):
a message is made when a poll hands it out, an ack keeps no reference to it, any set of
a fetch's records can be acknowledged (not only a run of them), and the fields read from
the answer's columns are those produced."""

from __future__ import annotations

import gc
import queue
import threading
import weakref

import pytest
from queue_helpers import admin, make_topic

from logstream import QueueConsumer
from logstream.client.queue_message import QueueMessage
from logstream.errors import InvalidRequestError
from logstream.testing.broker import BrokerProcess


def _poll(q: QueueConsumer, want: int) -> list[QueueMessage]:
    got: list[QueueMessage] = []
    for _ in range(20):
        got += q.poll(0.5, max_records=want - len(got))
        if len(got) >= want:
            break
    return got


def test_an_acked_message_is_freed_before_its_ack_is_sent(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 8)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=60_000)
    # acks wait for a commit (no linger send): they are queued while the messages go away
    with QueueConsumer(qbroker.address, group=name, max_records=8, ack_linger_ms=60_000) as q:
        page = _poll(q, 8)
        assert [m.offset for m in page] == list(range(8))
        refs = [weakref.ref(m) for m in page]
        was_enabled = gc.isenabled()
        gc.disable()  # freed by its reference count alone, not by a collection
        try:
            for m in page:
                m.ack()
            del m, page
            assert [r() for r in refs] == [None] * 8
        finally:
            if was_enabled:
                gc.enable()
        assert q.commit() == []
    t = admin(qbroker.address).describe_queue_group(name).total
    assert (t.acknowledged, t.acquired) == (8, 0)


def test_acks_of_scattered_records_settle_exactly_those(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 1, 10)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=60_000)
    with QueueConsumer(
        qbroker.address, group=name, max_records=10, ack_linger_ms=60_000, prefetch=False
    ) as q:
        page = _poll(q, 10)
        for i in (7, 0, 3, 9):  # out of order, with gaps
            page[i].ack()
        assert q.commit() == []
        t = admin(qbroker.address).describe_queue_group(name).total
        assert (t.acknowledged, t.acquired) == (4, 6)
        assert [m.settled for m in page] == ["ack" if i in (7, 0, 3, 9) else "" for i in range(10)]
        with pytest.raises(InvalidRequestError, match="already settled"):
            page[0].nack(delay_ms=0)
    # close() released the six unsettled ones: acked ones stay acked
    t = admin(qbroker.address).describe_queue_group(name).total
    assert (t.acknowledged, t.available) == (4, 6)


def test_fields_come_from_the_produced_records(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 2, 6, keys=3)
    admin(qbroker.address).create_queue_group(name, topics=[name])
    with QueueConsumer(qbroker.address, group=name, max_records=6) as q:
        page = sorted(_poll(q, 6), key=lambda m: (m.partition, m.offset))
        got = [(m.topic, m.partition, m.offset, m.key, m.value, m.headers) for m in page]
        assert all(m.delivery_count == 1 and m.timestamp_ms > 0 for m in page)
        for m in page:
            m.ack()
    # record i went to partition i % 2 with key k<i % 3>
    want = sorted(
        (name, i % 2, i // 2, f"k{i % 3}".encode(), f"task-{i}".encode(), ()) for i in range(6)
    )
    assert sorted(got) == want
    assert "QueueMessage(topic=" in repr(page[0])


def test_acks_of_one_fetch_split_over_two_requests_are_each_sent_once(
    qbroker: BrokerProcess, name: str
) -> None:
    # An ack is a byte written without a lock; a request takes the acked rows
    # (queue_records.take_acked). Half of a fetch's records are acked before the next
    # fetch takes them, half after: a lost ack would stay acquired, one sent twice
    # comes back refused (no longer held).
    make_topic(qbroker.address, name, 1, 100)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=120_000)
    with QueueConsumer(
        qbroker.address, group=name, max_records=50, ack_linger_ms=60_000, prefetch=False
    ) as q:
        first = _poll(q, 50)
        for m in first[:25]:
            m.ack()
        second = _poll(q, 50)  # its fetch carried the first 25 acks
        t = admin(qbroker.address).describe_queue_group(name).total
        assert (t.acknowledged, t.acquired) == (25, 75)
        for m in first[25:] + second:
            m.ack()
        assert q.commit() == []
        t = admin(qbroker.address).describe_queue_group(name).total
        assert (t.acknowledged, t.acquired, t.redelivered) == (100, 0, 0)
        assert {m.settled for m in first + second} == {"ack"}


def test_acks_from_many_threads_while_polls_and_the_linger_send_are_each_sent_once(
    qbroker: BrokerProcess, name: str
) -> None:
    # The same under threads: three ack while the polling thread's fetches and the
    # linger thread's settles (1 ms) take acks.
    total = 3_000
    make_topic(qbroker.address, name, 2, total)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=120_000)
    work: queue.SimpleQueue[QueueMessage | None] = queue.SimpleQueue()

    def acker() -> None:
        while (m := work.get()) is not None:
            m.ack()

    with QueueConsumer(
        qbroker.address, group=name, max_records=50, ack_linger_ms=1, prefetch=False
    ) as q:
        threads = [threading.Thread(target=acker) for _ in range(3)]
        for t in threads:
            t.start()
        got = 0
        try:
            while got < total:
                page = q.poll(1.0)
                assert page, f"only {got} of {total} records came"
                got += len(page)
                for m in page:
                    work.put(m)
        finally:
            for _ in threads:
                work.put(None)
            for t in threads:
                t.join()
        assert q.commit() == []
        d = admin(qbroker.address).describe_queue_group(name).total
        assert (d.acknowledged, d.acquired, d.redelivered) == (total, 0, 0)
