"""The broker source (through the client) and the data-dir source (storage opened read-only)
give the same replay of the same records: a real broker, real segment files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from logstream.client import Admin, Producer
from logstream.errors import KafkaStorageError, UnknownTopicOrPartitionError
from logstream.replay import timespec as ts
from logstream.replay.session import Replay, ReplayRequest
from logstream.replay.source import RecordSource
from logstream.replay.sources import BrokerSource, DataDirSource
from logstream.testing.broker import RunningBroker, run_broker
from logstream.testing.clock import ManualClock
from logstream.types import TopicPartition

BASE = 1_714_557_600_000
TOPIC = "replay-src"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    """Two partitions; partition p holds values p-0..p-5 stamped BASE + 1000*i + p."""
    with run_broker(tmp_path_factory.mktemp("data")) as b:
        admin = Admin(b.address)
        admin.create_topic(TOPIC, 2)
        admin.close()
        producer = Producer(b.address, linger_ms=0)
        for i in range(6):
            for p in (0, 1):
                producer.send(
                    TOPIC, f"{p}-{i}".encode(), partition=p, timestamp_ms=BASE + 1000 * i + p
                )
        producer.flush()
        producer.close()
        yield b


@pytest.fixture(params=["broker", "data-dir"])
def source(request: pytest.FixtureRequest, broker: RunningBroker) -> Iterator[RecordSource]:
    src: RecordSource
    if request.param == "broker":
        admin = Admin(broker.address)
        src = BrokerSource(broker.address, admin=admin)
        yield src
        src.close()
        admin.close()
    else:
        src = DataDirSource(broker.data_dir)  # next to the live broker: a read-only snapshot
        yield src
        src.close()


def values(replay: Replay) -> list[str]:
    return [r.value.decode() for r in replay.records() if r is not None and r.value]


def test_partitions_and_offsets(source: RecordSource) -> None:
    assert source.partitions_for(TOPIC) == [0, 1]
    tps = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
    assert source.beginning_offsets(tps) == dict.fromkeys(tps, 0)
    assert source.end_offsets(tps) == dict.fromkeys(tps, 6)
    found = source.offsets_for_times({tps[0]: BASE + 2500, tps[1]: BASE + 10**6})
    assert found[tps[0]] == 3
    assert found[tps[1]] in (None, 6)  # nothing that late: the end (broker) or None (files)
    with pytest.raises(UnknownTopicOrPartitionError):
        source.partitions_for("no-such-topic")


def test_a_range_replays_in_time_order(source: RecordSource) -> None:
    request = ReplayRequest(topics=(TOPIC,), start=ts.Timestamp(BASE + 3000), stop=ts.End())
    replay = Replay(source, request, clock=ManualClock(BASE + 60_000))
    assert values(replay) == ["0-3", "1-3", "0-4", "1-4", "0-5", "1-5"]
    assert replay.stats.positions == {TopicPartition(TOPIC, 0): 6, TopicPartition(TOPIC, 1): 6}


def test_last_n(source: RecordSource) -> None:
    replay = Replay(source, ReplayRequest(topics=(TOPIC,), last=3, partitions=(1,)))
    assert values(replay) == ["1-3", "1-4", "1-5"]


def test_a_directory_without_meta_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KafkaStorageError, match="not a logstream data directory"):
        DataDirSource(tmp_path)
