"""The broker's Subscribe loop (``FetchHandler.subscribe``, in-process): one log read per
pushed message once a subscriber has caught up, heartbeats only when asked for, and the
records arrive in order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from logstream.broker.broker import Broker
from logstream.broker.config import build_config
from logstream.broker.fetch import FetchHandler, FetchSpec
from logstream.broker.produce import ProduceHandler
from logstream.codec import encode_batch, iter_batches


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker.open(build_config(data_dir=str(tmp_path / "data"), auto_create_topics=True))
    try:
        yield b
    finally:
        b.close()


class _Blocking:
    """Drives the async ``subscribe`` generator from plain threads, one ``next`` at a time,
    on a loop of its own."""

    def __init__(self, stream: AsyncIterator[Any]) -> None:
        self._stream = stream
        self._loop = asyncio.new_event_loop()

    def __iter__(self) -> _Blocking:
        return self

    def __next__(self) -> Any:
        try:
            return self._loop.run_until_complete(anext(self._stream))
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self._loop.run_until_complete(self._stream.aclose())  # type: ignore[attr-defined]
        self._loop.close()


def _values(outcomes: list[Any]) -> list[bytes]:
    return [v for o in outcomes for b in iter_batches(o.records) for v in b.value_list()]


def test_a_caught_up_subscription_reads_once_per_append(broker: Broker) -> None:
    producer = ProduceHandler(broker)
    producer.produce("t", 0, [encode_batch([b"v0"])])
    handler = FetchHandler(broker)
    stream = _Blocking(handler.subscribe([FetchSpec("t", 0, 0, 0)], heartbeat_s=5.0))
    got: list[bytes] = []
    messages = 0
    n = 8

    def follow() -> None:
        nonlocal messages
        for outcomes in stream:
            got.extend(_values(outcomes))
            messages += 1
            if len(got) == n:
                return

    t = threading.Thread(target=follow)
    t.start()
    for i in range(1, n):
        # One append per push: the next lands only once the previous one was delivered.
        deadline = time.monotonic() + 10
        while len(got) < i and time.monotonic() < deadline:
            time.sleep(0.001)
        producer.produce("t", 0, [encode_batch([b"v%d" % i])])
    t.join(10)
    stream.close()
    assert got == [b"v%d" % i for i in range(n)]
    assert messages == n
    assert handler.reads == n  # not a second, empty read after every push


def test_heartbeats_come_only_when_asked_for(broker: Broker) -> None:
    ProduceHandler(broker).produce("t", 0, [encode_batch([b"v0"])])
    handler = FetchHandler(broker)
    beating = _Blocking(handler.subscribe([FetchSpec("t", 0, 0, 0)], heartbeat_s=0.05))
    assert _values(next(beating)) == [b"v0"]
    t0 = time.monotonic()
    assert next(beating) == [] and next(beating) == []
    assert 0.08 <= time.monotonic() - t0 < 2.0
    beating.close()

    silent = _Blocking(handler.subscribe([FetchSpec("t", 0, 1, 0)], idle_wait_s=0.05))
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(next(silent)))
    t.start()
    t.join(0.4)
    assert t.is_alive() and out == []  # idle: no message at all without a heartbeat
    ProduceHandler(broker).produce("t", 0, [encode_batch([b"v1"])])
    t.join(5)
    assert _values(out[0]) == [b"v1"]
    silent.close()


def test_heartbeats_keep_their_deadline_while_other_topics_are_busy(broker: Broker) -> None:
    """Appends to another topic (and broadcasts) must not disturb an idle
    subscription, which must still send its heartbeat on time."""
    producer = ProduceHandler(broker)
    producer.produce("busy", 0, [encode_batch([b"b"])])
    producer.produce("idle", 0, [encode_batch([b"i"])])
    stream = _Blocking(
        FetchHandler(broker).subscribe([FetchSpec("idle", 0, 1, 0)], heartbeat_s=0.1)
    )
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            producer.produce("busy", 0, [encode_batch([b"b"])])
            time.sleep(0.01)

    beats: list[Any] = []

    def collect() -> None:
        beats.extend(next(stream) for _ in range(5))

    t = threading.Thread(target=churn)
    t.start()
    reader = threading.Thread(target=collect, daemon=True)
    t0 = time.monotonic()
    reader.start()
    reader.join(3.0)  # bounded: a regression starves the heartbeat for good
    elapsed = time.monotonic() - t0
    stop.set()
    t.join(5)
    assert beats == [[]] * 5, f"{len(beats)} heartbeats in {elapsed:.1f} s"
    assert 0.4 <= elapsed < 2.0
    # the reader returned, so closing the generator here is safe
    stream.close()
