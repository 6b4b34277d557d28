"""KafkaConnection's one failure path: a handler that raises, at once or in its task,
closes that connection; an expected LogstreamError is a warning, anything else a bug
logged with its traceback."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import pytest

from logstream.errors import RequestTimedOutError
from logstream.kafka.connection import KafkaConnection


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def frame(api_key: int) -> bytes:
    body = struct.pack(">hhi", api_key, 0, 7)
    return struct.pack(">i", len(body)) + body


async def run_one(dispatch: Any) -> FakeTransport:
    conn = KafkaConnection(
        dispatch,
        max_request_bytes=1 << 20,
        gate=None,
        registry=set(),
        authenticated=True,
        principal_of=lambda cert: "",
    )
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.data_received(frame(3))
    for _ in range(3):  # the task's steps, if any
        await asyncio.sleep(0)
    return transport


def raises_now(exc: Exception) -> Any:
    def dispatch(frame: bytes, conn: KafkaConnection) -> Any:
        raise exc

    return dispatch


def raises_in_task(exc: Exception) -> Any:
    async def answer() -> Any:
        raise exc

    def dispatch(frame: bytes, conn: KafkaConnection) -> Any:
        return answer()

    return dispatch


@pytest.mark.parametrize("how", [raises_now, raises_in_task], ids=["sync", "task"])
def test_an_unexpected_error_closes_with_its_traceback(how: Any, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, logger="logstream.kafka"):
        transport = asyncio.run(run_one(how(ValueError("boom"))))
    assert transport.closed and not transport.written
    (rec,) = caplog.records
    assert rec.levelno == logging.ERROR and rec.exc_info is not None
    assert isinstance(rec.exc_info[1], ValueError)


@pytest.mark.parametrize("how", [raises_now, raises_in_task], ids=["sync", "task"])
def test_a_logstream_error_closes_with_a_warning(how: Any, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, logger="logstream.kafka"):
        transport = asyncio.run(run_one(how(RequestTimedOutError("stopping"))))
    assert transport.closed and not transport.written
    (rec,) = caplog.records
    assert rec.levelno == logging.WARNING and rec.exc_info is None
    assert "stopping" in rec.getMessage()
