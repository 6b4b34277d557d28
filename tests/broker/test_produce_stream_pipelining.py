"""ProduceStream reads and appends the next requests while an answer is still being sent
(a reader task per stream), answers in request order, and reports a failure after the
answers that preceded it. In-process servicer on its own event loop, no gRPC in between."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from logstream.broker.servicers import PRODUCE_STREAM_READ_AHEAD, LogServicer
from logstream.codec import encode_batch
from logstream.errors import InvalidRequiredAcksError
from logstream.protocol import log_pb2
from logstream.testing.broker import run_broker


def _request(topic: str, i: int, acks: int = 0) -> log_pb2.ProduceRequest:
    return log_pb2.ProduceRequest(
        acks=acks,
        correlation_id=i,
        partitions=[log_pb2.PartitionProduceData(topic=topic, batches=[encode_batch([b"%d" % i])])],
    )


async def _requests(items: list[log_pb2.ProduceRequest]) -> AsyncIterator[Any]:
    for item in items:
        yield item


@pytest.fixture
def servicer(tmp_path: Any) -> Any:
    with run_broker(tmp_path / "data", auto_create_topics=True) as b:
        b.broker.get_log("t", 0, create=True)  # known topic: appends run on the loop
        yield LogServicer(b.broker), b.broker


def _stream_tasks() -> int:
    return sum(t.get_name() == "logstream-produce-stream" for t in asyncio.all_tasks())


def test_requests_are_appended_while_the_first_answer_is_still_unsent(servicer: Any) -> None:
    svc, broker = servicer

    async def run() -> None:
        answers = svc.ProduceStream(_requests([_request("t", i) for i in range(3)]), None)
        first = await anext(answers)  # "being sent": nothing else is pulled from the stream
        assert first.correlation_id == 0
        deadline = time.monotonic() + 5
        while broker.get_log("t", 0).log_end_offset < 3:
            assert time.monotonic() < deadline, "the stream did not read ahead"
            await asyncio.sleep(0.01)
        rest = [a async for a in answers]
        assert [a.correlation_id for a in rest] == [1, 2]
        assert [a.partitions[0].results[0].base_offset for a in [first, *rest]] == [0, 1, 2]
        deadline = time.monotonic() + 5
        while _stream_tasks():
            assert time.monotonic() < deadline, "the stream's reader task did not exit"
            await asyncio.sleep(0.01)

    asyncio.run(run())


def test_read_ahead_is_bounded_when_answers_are_not_taken(servicer: Any) -> None:
    """A producer that never reads its answers stops being read: no unbounded buffer."""
    svc, broker = servicer
    n = PRODUCE_STREAM_READ_AHEAD * 4

    async def run() -> None:
        answers = svc.ProduceStream(_requests([_request("t", i) for i in range(n)]), None)
        assert (await anext(answers)).correlation_id == 0
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # give the reader every chance to run ahead
            await asyncio.sleep(0.02)
        appended = broker.get_log("t", 0).log_end_offset
        assert appended <= PRODUCE_STREAM_READ_AHEAD + 2, appended
        rest = [a async for a in answers]
        assert len(rest) == n - 1

    asyncio.run(run())


def test_a_failing_request_is_reported_after_the_answers_before_it(servicer: Any) -> None:
    svc, _ = servicer
    requests = [_request("t", 0), _request("t", 1, acks=99), _request("t", 2)]
    got: list[int] = []

    async def run() -> None:
        async for answer in svc.ProduceStream(_requests(requests), None):
            got.append(answer.correlation_id)

    with pytest.raises(InvalidRequiredAcksError, match="acks"):
        asyncio.run(run())
    assert got == [0]


def test_errors_only_requests_are_answered_only_when_something_failed(servicer: Any) -> None:
    """A Requester's requests (``errors_only``): stored ones get no answer, a failed one its
    whole answer; requests without the flag are answered as always."""
    svc, broker = servicer
    quiet = _request("t", 1)
    quiet.errors_only = True
    bad = log_pb2.ProduceRequest(
        correlation_id=2,
        errors_only=True,
        partitions=[
            log_pb2.PartitionProduceData(topic="t", batches=[encode_batch([b"ok"])]),
            log_pb2.PartitionProduceData(topic="t", partition=7, batches=[encode_batch([b"x"])]),
        ],
    )

    async def run() -> list[log_pb2.ProduceResponse]:
        items = [_request("t", 0), quiet, bad, _request("t", 3)]
        return [a async for a in svc.ProduceStream(_requests(items), None)]

    answers = asyncio.run(run())
    assert [a.correlation_id for a in answers] == [0, 2, 3]
    failed = answers[1]
    assert failed.partitions[0].error_code == 0 and not failed.partitions[0].results[0].error_code
    assert failed.partitions[1].error_code or failed.partitions[1].results[0].error_code
    assert broker.get_log("t", 0).log_end_offset == 4  # the quiet request was stored
