"""The cap on request bytes the broker holds decoded (``max_request_bytes_in_flight``):
the accounting of each decoded request and refusal with a named code when a unary request
does not fit. Streams wait for room before they read: tests/broker/test_request_gate.py."""

from __future__ import annotations

import gc
import logging

import pytest

from logstream.broker import rpc
from logstream.broker.config import BrokerConfig
from logstream.errors import InvalidConfigError, InvalidRequestError, ThrottlingQuotaExceededError
from logstream.protocol import log_pb2
from logstream.protocol.status import grpc_code_for


def _raw(size: int) -> bytes:
    return log_pb2.ProduceRequest(
        partitions=[log_pb2.PartitionProduceData(topic="t", batches=[b"x" * size])]
    ).SerializeToString()


def test_a_unary_request_holds_its_bytes_until_released_and_excess_is_refused() -> None:
    budget = rpc.ByteBudget(1000)
    decode = rpc._decoder(log_pb2.ProduceRequest, budget, "Log.Produce", rpc.REFUSE)
    first = decode(_raw(600))
    assert isinstance(first, rpc._Decoded) and budget.used == first.size
    second = decode(_raw(600))
    assert isinstance(second, rpc._Refused)
    assert isinstance(second.error, ThrottlingQuotaExceededError)
    assert grpc_code_for(second.error).name == "RESOURCE_EXHAUSTED"
    first.release()
    first.release()  # idempotent
    assert budget.used == 0
    third = decode(_raw(600))
    assert isinstance(third, rpc._Decoded) and budget.used > 0
    del third
    gc.collect()
    assert budget.used == 0  # a request dropped without its handler leaks nothing


def test_undecodable_bytes_hold_nothing_and_are_invalid_request() -> None:
    budget = rpc.ByteBudget(1000)
    decode = rpc._decoder(log_pb2.ProduceRequest, budget, "Log.Produce", rpc.REFUSE)
    out = decode(b"\xff" * 32)
    assert isinstance(out, rpc._Refused) and isinstance(out.error, InvalidRequestError)
    assert budget.used == 0


def test_the_cap_cannot_be_below_one_message() -> None:
    with pytest.raises(InvalidConfigError, match="max_request_bytes_in_flight"):
        BrokerConfig(max_message_bytes=8 << 20, max_request_bytes_in_flight=4 << 20)


def test_bad_input_log_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    limited = rpc.RateLimitedLog(logging.getLogger("test.limited"), every_s=60.0)
    with caplog.at_level(logging.WARNING, logger="test.limited"):
        for i in range(100):
            limited.warning("bad input %d", i)
    assert [r.getMessage() for r in caplog.records] == ["bad input 0"]
