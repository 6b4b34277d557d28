"""max_poll_interval_ms against a real broker process: a member that stops polling leaves the
group, its partitions move to the member that keeps polling, and its next poll rejoins."""

from __future__ import annotations

import logging
import threading

import pytest

from logstream.client import Admin, Consumer
from logstream.testing.broker import BrokerProcess
from logstream.testing.wait import wait_for
from logstream.types import TopicPartition

pytestmark = pytest.mark.slow

ALL = {TopicPartition("orders", p) for p in range(4)}


@pytest.fixture
def broker(tmp_path):
    proc = BrokerProcess(
        tmp_path / "data",
        group_min_session_timeout_ms=500,
        group_heartbeat_interval_ms=200,
        group_expiry_check_interval_ms=50,
    ).start()
    with Admin(proc.address) as admin:
        admin.create_topic("orders", 4)
    yield proc
    proc.terminate()


class Poller:
    """Polls a consumer in a thread until stopped; ``assignment`` as seen by that thread."""

    def __init__(self, consumer: Consumer) -> None:
        self.c = consumer
        self.assignment: set[TopicPartition] = set()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.c.poll(0.05)
            self.assignment = self.c.assignment()

    def close(self) -> None:
        self.stop.set()
        self.t.join(10)


def consumer(address: str) -> Consumer:
    return Consumer(
        address,
        group="workers",
        session_timeout_ms=10_000,  # long: the move below must not come from a session timeout
        max_poll_interval_ms=1_500,
        fetch_max_wait_ms=100,
    )


def test_a_hung_member_loses_its_partitions_to_the_others_and_rejoins(broker, caplog):
    hung, busy = consumer(broker.address), consumer(broker.address)
    hung.subscribe(["orders"])
    busy.subscribe(["orders"])
    other = Poller(busy)
    try:
        wait_for(
            lambda: (
                hung.poll(0.05) is not None
                and len(hung.assignment()) == 2
                and len(other.assignment) == 2
            ),
            what="two members with two partitions each",
        )
        held = hung.assignment()
        with caplog.at_level(logging.WARNING, logger="logstream.client.group"):
            # `hung` stops polling (a stuck handler): within max_poll_interval_ms plus a few
            # heartbeats its partitions belong to the member that keeps polling.
            wait_for(lambda: other.assignment == ALL, what="the hung member's partitions to move")
            assert held <= other.assignment
            left = [r.getMessage() for r in caplog.records if "leaving the group" in r.getMessage()]
            assert len(left) == 1 and "orders-" in left[0], left
            # Its next poll drops what it lost, says so and rejoins: the two share again.
            wait_for(
                lambda: (
                    hung.poll(0.05) is not None
                    and len(hung.assignment()) == 2
                    and len(other.assignment) == 2
                ),
                what="the rejoin and a new split",
            )
        assert any("rejoining" in r.getMessage() for r in caplog.records)
        assert hung.assignment().isdisjoint(other.assignment)
    finally:
        other.close()
        hung.close()
        busy.close()
