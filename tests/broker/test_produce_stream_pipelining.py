"""ProduceStream reads and appends the next requests while an answer is still being sent
(a helper thread per stream), answers in request order, and reports a failure after the
answers that preceded it. In-process servicer, no gRPC in between."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest

from logstream.broker.servicers import LogServicer
from logstream.codec import encode_batch
from logstream.protocol import log_pb2
from logstream.testing.broker import run_broker


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None

    def set_trailing_metadata(self, md: Any) -> None:
        pass

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        raise _Aborted(details)


def _request(topic: str, i: int, acks: int = 0) -> log_pb2.ProduceRequest:
    return log_pb2.ProduceRequest(
        acks=acks,
        correlation_id=i,
        partitions=[log_pb2.PartitionProduceData(topic=topic, batches=[encode_batch([b"%d" % i])])],
    )


@pytest.fixture
def servicer(tmp_path: Any) -> Any:
    with run_broker(tmp_path / "data", auto_create_topics=True) as b:
        yield LogServicer(b.broker), b.broker


def _pump_threads() -> int:
    return sum(t.name == "logstream-produce-stream" for t in threading.enumerate())


def test_requests_are_appended_while_the_first_answer_is_still_unsent(servicer: Any) -> None:
    svc, broker = servicer
    answers = svc.ProduceStream(iter([_request("t", i) for i in range(3)]), _Context())
    first = next(answers)  # the RPC thread now "sends" it; nothing else is pulled
    assert first.correlation_id == 0
    deadline = time.monotonic() + 5
    while broker.get_log("t", 0).log_end_offset < 3:
        assert time.monotonic() < deadline, "the stream did not read ahead"
        time.sleep(0.01)
    rest = list(answers)
    assert [a.correlation_id for a in rest] == [1, 2]
    assert [a.partitions[0].results[0].base_offset for a in [first, *rest]] == [0, 1, 2]
    deadline = time.monotonic() + 5
    while _pump_threads():
        assert time.monotonic() < deadline, "the stream's helper thread did not exit"
        time.sleep(0.01)


def test_a_failing_request_is_reported_after_the_answers_before_it(servicer: Any) -> None:
    svc, _ = servicer
    ctx = _Context()
    requests = [_request("t", 0), _request("t", 1, acks=99), _request("t", 2)]
    got = []
    with pytest.raises(_Aborted, match="acks"):
        for answer in svc.ProduceStream(iter(requests), ctx):
            got.append(answer.correlation_id)
    assert got == [0]
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT
