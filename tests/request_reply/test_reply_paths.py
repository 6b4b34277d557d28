"""The two ways a ``QueueMessage.reply`` leaves the responder (client/reply_sender.py,
docs/decisions/0035): riding the member's next fetch, or the background sender after
``reply_linger_ms`` when no poll comes. Real broker process, real gRPC."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from logstream import Admin, Producer, QueueConsumer, Requester, errors
from logstream.protocol.request_reply import CORRELATION_ID_HEADER, REPLY_TO_HEADER
from logstream.testing.broker import BrokerProcess

NEVER_MS = 600_000  # a linger no test waits out: only a poll can carry the reply


@pytest.fixture(scope="module")
def rbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    data = tmp_path_factory.mktemp("reply-paths") / "data"
    with BrokerProcess(data, queue_tick_interval_ms=20) as proc:
        yield proc


@pytest.fixture
def topic(rbroker: BrokerProcess) -> str:
    name = f"rp-{uuid.uuid4().hex[:10]}"
    with Admin(rbroker.address) as admin:
        admin.create_topic(name, partitions=1)
    return name


def poll_one(q: QueueConsumer, timeout: float = 20.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = q.poll(0.1)
        if got:
            return got
    raise AssertionError("no record within the deadline")


def nothing_redelivered(address: str, group: str, topic: str) -> bool:
    """A new member of ``group`` gets nothing for a while (what an earlier member held was
    released when it closed, so an unacked request would come back at once)."""
    with QueueConsumer(address, group=group, topics=[topic]) as q2:
        return q2.poll(0.5) == []


def test_a_reply_rides_the_next_poll_with_its_ack(rbroker: BrokerProcess, topic: str) -> None:
    group = f"ride-{topic}"
    with Requester(rbroker.address) as r:
        q = QueueConsumer(rbroker.address, group=group, topics=[topic], reply_linger_ms=NEVER_MS)
        try:
            future = r.request_async(topic, b"ping", timeout=30)
            (msg,) = poll_one(q)
            msg.reply(b"pong")
            msg.ack()
            assert not future.done()  # queued: nothing is sent until the poll
            q.poll(0.05)
            assert future.result(10).value == b"pong"
            assert msg.replied is not None and msg.replied.result(0) is None
            assert msg.error is None
        finally:
            q.close()
        assert nothing_redelivered(rbroker.address, group, topic)


def test_a_reply_without_a_poll_goes_out_after_the_linger(
    rbroker: BrokerProcess, topic: str
) -> None:
    group = f"linger-{topic}"
    with (
        Requester(rbroker.address) as r,
        QueueConsumer(rbroker.address, group=group, topics=[topic], reply_linger_ms=5) as q,
    ):
        future = r.request_async(topic, b"ping", timeout=30)
        (msg,) = poll_one(q)
        msg.reply(b"pong")
        msg.ack()
        # no poll from here on: the background sender must deliver it
        assert future.result(10).value == b"pong"
        assert msg.replied is not None and msg.replied.result(10) is None


def test_a_riding_reply_to_a_bad_address_fails_alone(rbroker: BrokerProcess, topic: str) -> None:
    """The broker refuses the reply with a named error for it; the ack behind it and the
    fetch itself go through."""
    group = f"bad-{topic}"
    with Producer(rbroker.address, linger_ms=0) as p:
        p.send(
            topic,
            b"ask",
            headers=[(REPLY_TO_HEADER, b"_inbox.not-hex"), (CORRELATION_ID_HEADER, b"c1")],
        ).result(10)
    q = QueueConsumer(rbroker.address, group=group, topics=[topic], reply_linger_ms=NEVER_MS)
    try:
        (msg,) = poll_one(q)
        replied = msg.reply(b"answer")
        msg.ack()
        q.poll(0.05)
        assert isinstance(replied.exception(10), errors.InvalidTopicError)
        assert q.commit() == []
    finally:
        q.close()
    assert nothing_redelivered(rbroker.address, group, topic)


def test_reply_linger_must_not_be_negative(rbroker: BrokerProcess, topic: str) -> None:
    with pytest.raises(errors.InvalidRequestError, match="reply_linger_ms"):
        QueueConsumer(rbroker.address, group=f"neg-{topic}", topics=[topic], reply_linger_ms=-1)
