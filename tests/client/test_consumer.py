"""Consumer behaviour against the in-memory transport: positions, seeks, resets, pause,
long-poll wake-up, columnar reads."""

from __future__ import annotations

import threading
import time

import pytest

from logstream import errors
from logstream.client import Consumer, Producer
from logstream.testing.transport import InMemoryTransport
from logstream.types import TopicPartition

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


@pytest.fixture
def transport() -> InMemoryTransport:
    t = InMemoryTransport()
    t.create_topic("t", partitions=2)
    with Producer(t, batch_bytes=400) as p:
        for i in range(100):
            p.send("t", b"%d" % i, partition=i % 2, timestamp_ms=1_000 + i)
    return t


def _drain(c: Consumer, n: int, timeout: float = 5.0) -> list:  # type: ignore[type-arg]
    out: list = []  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out.extend(c.poll(0.2))
    return out


def test_earliest_reads_everything_in_partition_order(transport: InMemoryTransport) -> None:
    with Consumer(transport, auto_offset_reset="earliest") as c:
        c.assign([TP0, TP1])
        recs = _drain(c, 100)
        assert len(recs) == 100
        for p in (0, 1):
            assert [r.offset for r in recs if r.partition == p] == list(range(50))
        assert c.position(TP0) == 50


def test_latest_starts_at_the_end(transport: InMemoryTransport) -> None:
    with Consumer(transport, auto_offset_reset="latest") as c:
        c.assign([TP0])
        assert c.position(TP0) == 50
        assert c.poll(0.1) == []


def test_seek_mid_batch_skips_earlier_records(transport: InMemoryTransport) -> None:
    with Consumer(transport) as c:
        c.assign([TP0])
        c.seek(TP0, 7)
        recs = _drain(c, 43)
        assert [r.offset for r in recs] == list(range(7, 50))
        assert recs[0].value == b"14"


def test_seek_after_reading_rewinds(transport: InMemoryTransport) -> None:
    with Consumer(transport, auto_offset_reset="earliest") as c:
        c.assign([TP1])
        assert len(_drain(c, 50)) == 50
        c.seek(TP1, 45)
        assert [r.offset for r in _drain(c, 5)] == [45, 46, 47, 48, 49]
        c.seek_to_beginning()
        assert c.poll(2, max_records=1)[0].offset == 0
        c.seek_to_end()
        assert c.position(TP1) == 50


def test_offsets_for_times_and_seek_by_time(transport: InMemoryTransport) -> None:
    with Consumer(transport) as c:
        c.assign([TP0])
        found = c.offsets_for_times({TP0: 1_040})
        assert 0 <= found[TP0] <= 20  # the batch holding timestamp 1040
        c.seek_to_timestamp(1_040)
        recs = _drain(c, 50 - found[TP0])
        assert recs[0].offset == found[TP0]
        assert c.beginning_offsets([TP0]) == {TP0: 0}
        assert c.end_offsets([TP0]) == {TP0: 50}


def test_max_records_is_respected(transport: InMemoryTransport) -> None:
    with Consumer(transport, auto_offset_reset="earliest") as c:
        c.assign([TP0])
        first = c.poll(2, max_records=3)
        assert [r.offset for r in first] == [0, 1, 2]
        assert c.poll(2, max_records=2)[0].offset == 3


def test_reset_error_requires_a_seek(transport: InMemoryTransport) -> None:
    with Consumer(transport, auto_offset_reset="error") as c:
        c.assign([TP0])
        with pytest.raises(errors.OffsetOutOfRangeError):
            c.poll(0.1)
        c.seek(TP0, 49)
        assert [r.offset for r in _drain(c, 1)] == [49]


def test_out_of_range_seek_resets_per_policy(transport: InMemoryTransport) -> None:
    with Consumer(transport, auto_offset_reset="earliest") as c:
        c.assign([TP0])
        c.seek(TP0, 10_000)
        recs = _drain(c, 50)
        assert recs[0].offset == 0


def test_out_of_range_with_error_policy_raises_once_then_waits_for_seek(
    transport: InMemoryTransport,
) -> None:
    with Consumer(transport, auto_offset_reset="error") as c:
        c.assign([TP0])
        c.seek(TP0, 10_000)
        with pytest.raises(errors.OffsetOutOfRangeError):
            for _ in range(20):
                c.poll(0.1)
        c.seek(TP0, 0)
        assert len(_drain(c, 50)) == 50


def test_pause_and_resume(transport: InMemoryTransport) -> None:
    with Consumer(transport, auto_offset_reset="earliest") as c:
        c.assign([TP0, TP1])
        c.pause([TP0])
        recs = _drain(c, 50)
        assert {r.partition for r in recs} == {1}
        assert c.paused() == {TP0}
        c.resume([TP0])
        assert {r.partition for r in _drain(c, 50)} == {0}


def test_long_poll_wakes_on_new_data(transport: InMemoryTransport) -> None:
    with Consumer(transport, auto_offset_reset="latest", fetch_max_wait_ms=5_000) as c:
        c.assign([TP0])
        c.position(TP0)

        def later() -> None:
            time.sleep(0.2)
            with Producer(transport) as p:
                p.send("t", b"new", partition=0)

        threading.Thread(target=later).start()
        start = time.monotonic()
        recs = c.poll(5.0)
        assert [r.value for r in recs] == [b"new"]
        assert time.monotonic() - start < 2.0


def test_poll_batch_is_columnar(transport: InMemoryTransport) -> None:
    with Consumer(transport, auto_offset_reset="earliest") as c:
        c.assign([TP0])
        got = 0
        offsets: list[int] = []
        deadline = time.monotonic() + 5
        while got < 50 and time.monotonic() < deadline:
            cols = c.poll_batch(0.2)
            got += len(cols)
            offsets.extend(cols.offsets.tolist())
        assert offsets == list(range(50))


def test_iteration_stops_when_closed_from_another_thread(transport: InMemoryTransport) -> None:
    c = Consumer(transport, auto_offset_reset="earliest")
    c.assign([TP0])
    seen = []
    threading.Timer(0.5, c.close).start()
    for rec in c:
        seen.append(rec)
    assert len(seen) == 50


def test_groups_are_a_clear_extension_point(transport: InMemoryTransport) -> None:
    with Consumer(transport) as c:
        with pytest.raises(errors.LogstreamError, match="assign"):
            c.subscribe(["t"])
        with pytest.raises(errors.LogstreamError):
            c.commit()
        with pytest.raises(errors.InvalidRequestError):
            c.seek(TopicPartition("t", 9), 0)
    with pytest.raises(errors.ClientClosedError):
        c.poll()
