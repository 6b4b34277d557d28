"""The Requester's request stream (``RequestSender``) against the in-memory transport:
requests that queue up while the broker is slow share one batch, an error answer fails
exactly the requests of its message, and ``close`` ends the stream at once."""

from __future__ import annotations

import time

from logstream import errors
from logstream.client.request_sender import RequestSender
from logstream.testing.transport import InMemoryTransport
from logstream.testing.wait import wait_for


def _sender(t: InMemoryTransport, failed: dict[bytes, BaseException]) -> RequestSender:
    def refused(first: int, last: int, exc: BaseException) -> None:
        raise AssertionError(f"stream refused: {exc}")

    return RequestSender(t, lambda rid, exc: failed.__setitem__(rid, exc), refused)


def _send(s: RequestSender, topic: str, partition: int, values: list[bytes]) -> list[bytes]:
    ids = []
    for v in values:
        number, request_id = s.next_id()
        s.send(number, topic, partition, None, v, [("logstream-correlation-id", request_id)])
        ids.append(request_id)
    return ids


def test_requests_queued_behind_a_slow_broker_share_one_batch() -> None:
    t = InMemoryTransport()
    t.create_topic("svc", 1)
    gate = t.hold_produce_answers()  # the broker takes the next message after answering
    failed: dict[bytes, BaseException] = {}
    s = _sender(t, failed)
    values = [b"%d" % i for i in range(10)]
    _send(s, "svc", 0, values)
    gate.set()
    wait_for(lambda: len(t.records("svc", 0)) == 10, what="the ten requests")
    assert [v for _, _, v in t.records("svc", 0)] == values
    assert len(t.topics["svc"][0].batches) < 10  # the ones that waited went together
    started = time.monotonic()
    s.close()
    assert time.monotonic() - started < 2  # the end of the stream is not lost
    assert not failed


def test_an_error_answer_fails_exactly_the_requests_of_its_message() -> None:
    t = InMemoryTransport()
    t.create_topic("svc", 1)
    gate = t.hold_produce_answers()
    failed: dict[bytes, BaseException] = {}
    s = _sender(t, failed)
    good = _send(s, "svc", 0, [b"a"])
    bad = _send(s, "svc", 7, [b"b", b"c", b"d"])  # no partition 7: refused per partition
    after = _send(s, "svc", 0, [b"e"])
    gate.set()
    wait_for(lambda: len(failed) == 3 and len(t.records("svc", 0)) == 2, what="the answers")
    assert set(failed) == set(bad)
    assert all(isinstance(e, errors.UnknownTopicOrPartitionError) for e in failed.values())
    assert good[0] not in failed and after[0] not in failed
    s.close()
