"""RecordFuture / BatchResult: one shared completion per batch, a tiny handle per record."""

from __future__ import annotations

import threading

import pytest

from logstream import errors
from logstream.client.producer.accumulator import ProducerBatch
from logstream.client.producer.futures import (
    BatchResult,
    RecordFuture,
    failed_future,
    new_future,
)
from logstream.types import RecordMetadata


def _future(result: BatchResult, index: int) -> RecordFuture:
    return new_future(RecordFuture, (result, index))  # type: ignore[no-any-return]


def test_result_gives_offset_of_the_record_within_its_batch() -> None:
    br = BatchResult("t", 2, 0, [100, 101, 102])
    futs = [_future(br, i) for i in range(3)]
    assert not futs[0].done()
    br.complete(40)
    assert all(f.done() for f in futs)
    assert futs[2].result() == RecordMetadata("t", 2, 42, 102)
    assert futs[1].exception() is None


def test_log_append_time_replaces_create_time() -> None:
    br = BatchResult("t", 0, 0, [1, 2])
    br.complete(0, log_append_time_ms=999)
    assert _future(br, 1).result().timestamp_ms == 999


def test_failure_is_raised_by_every_record_of_the_batch() -> None:
    br = BatchResult("t", 0, 0, [1, 2])
    br.complete(-1, -1, errors.MessageTooLargeError("big"))
    for i in range(2):
        with pytest.raises(errors.MessageTooLargeError):
            _future(br, i).result()
        assert isinstance(_future(br, i).exception(), errors.MessageTooLargeError)


def test_result_times_out_with_a_named_error() -> None:
    br = BatchResult("t", 0, 0, [1])
    with pytest.raises(errors.RequestTimedOutError):
        _future(br, 0).result(timeout=0.01)


def test_result_wakes_a_waiting_thread() -> None:
    br = BatchResult("t", 0, 0, [1])
    got: list[RecordMetadata] = []
    th = threading.Thread(target=lambda: got.append(_future(br, 0).result(timeout=5)))
    th.start()
    br.complete(7)
    th.join(5)
    assert got == [RecordMetadata("t", 0, 7, 1)]


def test_callbacks_run_once_with_their_own_record() -> None:
    br = BatchResult("t", 0, 0, [1, 2, 3])
    seen: list[int] = []
    _future(br, 2).add_done_callback(lambda f: seen.append(f.result().offset))
    _future(br, 0).add_callback(lambda f: seen.append(f.result().offset))
    br.complete(10)
    br.complete(99)  # a second completion is ignored
    _future(br, 1).add_done_callback(lambda f: seen.append(f.result().offset))  # already done
    assert seen == [12, 10, 11]


def test_a_failing_callback_does_not_break_completion() -> None:
    br = BatchResult("t", 0, 0, [1, 2])

    def boom(_: RecordFuture) -> None:
        raise RuntimeError("user bug")

    later: list[int] = []
    _future(br, 0).add_done_callback(boom)
    _future(br, 1).add_done_callback(lambda f: later.append(f.result().offset))
    br.complete(0)
    assert later == [1]


def test_failed_future_is_done_and_raises() -> None:
    f = failed_future("nope", -1, errors.UnknownTopicOrPartitionError("nope"))
    assert f.done()
    with pytest.raises(errors.UnknownTopicOrPartitionError):
        f.result()


def test_record_future_is_a_small_tuple() -> None:
    br = BatchResult("t", 0, 0, [1])
    f = _future(br, 0)
    assert isinstance(f, tuple) and len(f) == 2
    assert "pending" in repr(f)


def test_batch_headers_column_fills_earlier_records() -> None:
    b = ProducerBatch("t", 0, 0.0, 0)
    for _ in range(2):
        b.values.append(b"v")
    b.add_headers(2, b"blob")
    assert b.headers == [b"", b"", b"blob"]
