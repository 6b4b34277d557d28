"""The consumer follows its partitions on one ``Subscribe`` stream (the broker pushes appends;
no Fetch per answer), long-polls ``Fetch`` instead for ``fetch_min_bytes`` > 1, and restarts
the stream on seek / pause / resume.

Against an in-process broker whose fetch handler counts its calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from logstream import Admin, Consumer, Producer, TopicPartition
from logstream.broker import fetch as broker_fetch
from logstream.testing.broker import run_broker

pytestmark = pytest.mark.slow


@pytest.fixture
def counted(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, dict[str, int]]]:
    calls = {"fetch": 0, "subscribe": 0}
    fetch, subscribe = broker_fetch.FetchHandler.fetch, broker_fetch.FetchHandler.subscribe

    def counting_fetch(self: Any, *args: Any, **kw: Any) -> Any:
        calls["fetch"] += 1
        return fetch(self, *args, **kw)

    def counting_subscribe(self: Any, *args: Any, **kw: Any) -> Any:
        calls["subscribe"] += 1
        return subscribe(self, *args, **kw)

    monkeypatch.setattr(broker_fetch.FetchHandler, "fetch", counting_fetch)
    monkeypatch.setattr(broker_fetch.FetchHandler, "subscribe", counting_subscribe)
    with run_broker(tmp_path / "data") as b:
        with Admin(b.address) as admin:
            admin.create_topic("t", partitions=2)
        yield b, calls


def _poll_until(c: Consumer, n: int, timeout: float = 5.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out.extend(c.poll(0.1))
    return out


def test_records_arrive_on_one_subscribe_stream_without_fetches(counted: Any) -> None:
    b, calls = counted
    tp = TopicPartition("t", 0)
    with Consumer(b.address, fetch_max_wait_ms=100) as c, Producer(b.address, linger_ms=0) as p:
        c.assign([tp])
        c.position(tp)
        got: list[bytes] = []
        for i in range(20):
            p.send("t", b"%d" % i, partition=0).result(5)
            got += [r.value for r in _poll_until(c, 1)]
        time.sleep(0.3)  # several fetch_max_wait_ms periods: a long-polling consumer re-fetches
    assert got == [b"%d" % i for i in range(20)]
    assert calls == {"fetch": 0, "subscribe": 1}


def test_min_bytes_above_one_long_polls_fetch(counted: Any) -> None:
    b, calls = counted
    tp = TopicPartition("t", 0)
    with Consumer(b.address, fetch_min_bytes=2, fetch_max_wait_ms=50) as c:
        c.assign([tp])
        c.position(tp)
        with Producer(b.address) as p:
            p.send("t", b"x" * 10, partition=0).result(5)
        assert [r.value for r in _poll_until(c, 1)] == [b"x" * 10]
    assert calls["subscribe"] == 0 and calls["fetch"] >= 1


def test_seek_pause_and_resume_restart_the_stream(counted: Any) -> None:
    b, calls = counted
    tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
    with Producer(b.address) as p:
        for i in range(5):
            p.send("t", b"a%d" % i, partition=0)
            p.send("t", b"b%d" % i, partition=1)
    # 30 s long polls: a resume that waited for the running one to end would time out here
    with Consumer(b.address, auto_offset_reset="earliest", fetch_max_wait_ms=30_000) as c:
        c.assign([tp0, tp1])
        c.pause([tp1])
        assert sorted(r.value for r in _poll_until(c, 5)) == [b"a%d" % i for i in range(5)]
        c.resume([tp1])
        started = time.monotonic()
        assert [r.value for r in _poll_until(c, 5)] == [b"b%d" % i for i in range(5)]
        assert time.monotonic() - started < 3.0
        c.seek(tp0, 3)
        assert [r.value for r in _poll_until(c, 2)] == [b"a3", b"a4"]
    assert calls["fetch"] == 0 and calls["subscribe"] >= 3
