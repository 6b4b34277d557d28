"""The Fetcher alone, over a SubscriptionState and the in-memory transport: what it reads,
when it stops, and how it reacts to changes and failures."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from logstream import errors
from logstream.client.chunks import RecordList
from logstream.client.fetcher import Fetcher, FetchSettings
from logstream.client.offsets import OffsetLookup
from logstream.client.subscription import SubscriptionState
from logstream.codec import encode_batch
from logstream.testing.transport import InMemoryTransport
from logstream.types import EARLIEST, TopicPartition

TP = TopicPartition("t", 0)


def _append(transport: InMemoryTransport, n: int, start: int = 0) -> None:
    transport.topics["t"][0].append(encode_batch([b"%d" % i for i in range(start, start + n)]))


def _settings(**kw: object) -> FetchSettings:
    base: dict[str, object] = dict(
        max_wait_ms=200,
        min_bytes=1,
        max_bytes=1 << 20,
        partition_max_bytes=1 << 20,
        verify=True,
        timeout=2.0,
        backoff=0.01,
    )
    base.update(kw)
    return FetchSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
def transport() -> InMemoryTransport:
    t = InMemoryTransport()
    t.create_topic("t", partitions=1)
    return t


@pytest.fixture
def reader(transport: InMemoryTransport) -> Iterator[tuple[SubscriptionState, Fetcher]]:
    state = SubscriptionState(reset=EARLIEST, max_buffer_bytes=1 << 20)
    fetcher = Fetcher(state, transport, _settings(), OffsetLookup(state, transport, timeout=2.0))
    yield state, fetcher
    state.close()
    fetcher.join(5)


def _values(state: SubscriptionState, n: int, timeout: float = 5.0) -> list[bytes | None]:
    got: list[bytes | None] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        out = RecordList()
        state.take(0.2, 100, out.take_from)
        got.extend(r.value for r in out)
    return got


def test_it_resets_a_new_partition_and_queues_what_is_there(
    transport: InMemoryTransport, reader: tuple[SubscriptionState, Fetcher]
) -> None:
    state, _ = reader
    _append(transport, 3)
    state.assign([TP])
    assert _values(state, 3) == [b"0", b"1", b"2"]
    assert transport.calls["ListOffsets"] == 1


def test_records_appended_while_parked_arrive_on_the_open_stream(
    transport: InMemoryTransport, reader: tuple[SubscriptionState, Fetcher]
) -> None:
    state, fetcher = reader
    state.assign([TP])
    assert fetcher.wait_parked()
    opened = transport.calls["Subscribe"]
    _append(transport, 2)
    assert _values(state, 2) == [b"0", b"1"]
    assert transport.calls["Subscribe"] == opened  # the same stream carried them


def test_a_seek_cancels_the_stream_and_reads_from_the_new_offset(
    transport: InMemoryTransport, reader: tuple[SubscriptionState, Fetcher]
) -> None:
    state, fetcher = reader
    _append(transport, 5)
    state.assign([TP])
    assert _values(state, 5) == [b"0", b"1", b"2", b"3", b"4"]
    assert fetcher.wait_parked()
    state.seek(TP, 3)
    assert _values(state, 2) == [b"3", b"4"]
    assert transport.calls["Subscribe"] >= 2


def test_min_bytes_above_one_long_polls_fetch_instead_of_subscribing(
    transport: InMemoryTransport,
) -> None:
    state = SubscriptionState(reset=EARLIEST, max_buffer_bytes=1 << 20)
    fetcher = Fetcher(
        state, transport, _settings(min_bytes=10), OffsetLookup(state, transport, timeout=2.0)
    )
    try:
        _append(transport, 4)
        state.assign([TP])
        assert _values(state, 4) == [b"0", b"1", b"2", b"3"]
        assert transport.calls.get("Fetch", 0) >= 1
        assert "Subscribe" not in transport.calls
        assert not fetcher.streams
    finally:
        state.close()
        fetcher.join(5)


def test_a_short_outage_is_retried_without_surfacing(
    transport: InMemoryTransport, reader: tuple[SubscriptionState, Fetcher]
) -> None:
    state, _ = reader
    transport.fail("Subscribe", errors.BrokerNotAvailableError, times=2)
    _append(transport, 1)
    state.assign([TP])
    assert _values(state, 1) == [b"0"]
    assert transport.calls["Subscribe"] >= 3


def test_an_outage_longer_than_the_request_timeout_surfaces(transport: InMemoryTransport) -> None:
    state = SubscriptionState(reset=EARLIEST, max_buffer_bytes=1 << 20)
    fetcher = Fetcher(
        state, transport, _settings(timeout=0.05), OffsetLookup(state, transport, timeout=2.0)
    )
    try:
        transport.fail("Subscribe", errors.BrokerNotAvailableError, times=1000)
        state.assign([TP])
        with pytest.raises(errors.BrokerNotAvailableError):
            _values(state, 1)
    finally:
        state.close()
        fetcher.join(5)


def test_list_offsets_raises_the_partition_error(transport: InMemoryTransport) -> None:
    state = SubscriptionState(reset=EARLIEST, max_buffer_bytes=1 << 20)
    with pytest.raises(errors.UnknownTopicOrPartitionError):
        OffsetLookup(state, transport, timeout=2.0).list_offsets(
            {TopicPartition("missing", 0): EARLIEST}
        )


def test_it_waits_idle_with_nothing_assigned(reader: tuple[SubscriptionState, Fetcher]) -> None:
    _, fetcher = reader
    assert fetcher.wait_idle(5)
