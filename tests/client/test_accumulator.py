"""RecordAccumulator and the Sender's retry policy on their own, without a Producer."""

from __future__ import annotations

import threading

import pytest

from logstream import errors
from logstream.client.producer.accumulator import RecordAccumulator
from logstream.client.producer.sender import RETRY_JITTER, backoff_delay
from logstream.types import TopicPartition


def _acc(**overrides: float) -> RecordAccumulator:
    settings: dict[str, float] = dict(
        batch_bytes=100,
        max_record_bytes=1000,
        linger_s=0.0,
        buffer_bytes=10_000,
        max_block_s=0.2,
        delivery_timeout_s=60.0,
    )
    settings.update(overrides)
    return RecordAccumulator(**settings)  # type: ignore[arg-type]


def test_a_full_batch_is_sealed_into_its_partition_queue() -> None:
    acc = _acc()
    t = acc.add_topic("t", 2)
    with acc.lock:
        b = acc.batch_for(t, 1, None, 60, None)
        assert b is not None
        acc.append(b, b"x" * 44, None, None, None, 60)
        second = acc.batch_for(t, 1, t.open[1], 60, None)  # 120 > batch_bytes: a new batch
    assert second is not b
    assert list(acc.ready[TopicPartition("t", 1)]) == [b]
    assert acc.buffered == 60


def test_seal_due_seals_lingered_batches_and_says_when_the_next_is_due() -> None:
    acc = _acc(linger_s=10.0)
    t = acc.add_topic("t", 1)
    with acc.lock:
        b = acc.batch_for(t, 0, None, 20, None)
        assert b is not None
        acc.append(b, b"v", None, None, None, 20)
        assert acc.seal_due(b.created + 1.0) == pytest.approx(b.created + 10.0)
        assert not acc.ready
        assert acc.seal_due(b.created + 10.0) is None
    assert list(acc.ready[TopicPartition("t", 0)]) == [b]


def test_requeued_batches_go_first_in_sequence_order() -> None:
    acc = _acc()
    t = acc.add_topic("t", 1)
    tp = TopicPartition("t", 0)
    batches = []
    with acc.lock:
        for seq in range(3):
            b = acc.new_batch(t, 0, t.open[0])
            acc.append(b, b"v", None, None, None, 20)
            b.base_sequence = seq
            batches.append(b)
        acc.seal(t, 0, batches[-1])
        fresh = acc.ready[tp].popleft(), acc.ready[tp].popleft(), acc.ready[tp].popleft()
        assert fresh == tuple(batches)
        acc.ready[tp].append(batches[2])  # a batch not yet sent
        for b in (batches[1], batches[0]):  # failed answers arrive newest first
            b.attempts = 1
            acc.requeue(tp, b)
    assert list(acc.ready[tp]) == [batches[0], batches[1], batches[2]]


def test_a_full_buffer_blocks_for_max_block_then_raises() -> None:
    acc = _acc(buffer_bytes=50, max_block_s=0.05)
    t = acc.add_topic("t", 1)
    with acc.lock:
        b = acc.batch_for(t, 0, None, 40, None)
        assert b is not None
        acc.append(b, b"v", None, None, None, 40)
        with pytest.raises(errors.BufferExhaustedError):
            acc.wait_for_space(40)
        assert acc.flush_all == 0  # reset once nobody waits


def test_releasing_a_batch_wakes_a_send_waiting_for_room() -> None:
    acc = _acc(buffer_bytes=50, max_block_s=10.0)
    t = acc.add_topic("t", 1)
    with acc.lock:
        b = acc.batch_for(t, 0, None, 40, None)
        assert b is not None
        acc.append(b, b"v", None, None, None, 40)
    waited = threading.Event()

    def wait() -> None:
        with acc.lock:
            acc.wait_for_space(40)
        waited.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    with acc.lock:  # the waiter registers under the lock; wait until it has
        while acc.space_waiters == 0:
            acc.lock.release()
            waiter.join(0.001)
            acc.lock.acquire()
    acc.release(b)
    assert waited.wait(5)
    assert acc.buffered == 0


def test_close_returns_the_unsent_batches_and_refuses_more() -> None:
    acc = _acc()
    t = acc.add_topic("t", 1)
    with acc.lock:
        b = acc.batch_for(t, 0, None, 20, None)
    assert acc.close() == [b]
    assert acc.limit == -1
    with acc.lock, pytest.raises(errors.ClientClosedError):
        acc.wait_for_space(1)


def test_retry_backoff_is_exponential_capped_and_jittered() -> None:
    delays = [backoff_delay(3, 0.1, 10.0) for _ in range(200)]
    assert all(
        0.8 * (1 - RETRY_JITTER) - 1e-9 <= d <= 0.8 * (1 + RETRY_JITTER) + 1e-9 for d in delays
    )
    assert len({round(d, 6) for d in delays}) > 100  # spread, not lockstep
    capped = [backoff_delay(30, 0.1, 1.0) for _ in range(50)]
    assert max(capped) <= 1.0 * (1 + RETRY_JITTER) + 1e-9


def test_jitter_is_kip_580s_and_produce_retries_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries of a failed produce wait a backoff drawn from +/-20% of the nominal delay, so
    producers that failed together do not retry in lockstep."""
    import random

    from logstream.client import Producer
    from logstream.testing.transport import InMemoryTransport

    assert RETRY_JITTER == 0.2
    draws: list[tuple[float, float]] = []
    uniform = random.uniform

    def spy(a: float, b: float) -> float:
        draws.append((a, b))
        return uniform(a, b)

    monkeypatch.setattr(random, "uniform", spy)
    t = InMemoryTransport()
    t.create_topic("orders", partitions=1)
    t.fail("ProduceStream", errors.RequestTimedOutError, times=2)
    with Producer(t, retry_backoff_ms=1, retry_backoff_max_ms=5) as p:
        p.send("orders", b"x", partition=0).result(10)
    assert draws.count((1 - RETRY_JITTER, 1 + RETRY_JITTER)) >= 2, draws
    assert len(t.records("orders", 0)) == 1
