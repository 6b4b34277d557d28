"""Consumer groups through the real client against an in-process broker (threads)."""

from __future__ import annotations

import threading
import time

import pytest

from logstream.client import Consumer, Producer
from logstream.client.membership import CommitFailedError
from logstream.client.transport import Transport
from logstream.errors import InvalidConfigError, LogstreamError
from logstream.testing.broker import run_broker
from logstream.testing.wait import wait_for
from logstream.types import GroupMetadata, TopicPartition

FAST = dict(session_timeout_ms=2_000, auto_commit_interval_ms=200, fetch_max_wait_ms=100)


@pytest.fixture
def broker(tmp_path):
    with run_broker(
        tmp_path / "data", group_min_session_timeout_ms=500, group_heartbeat_interval_ms=200
    ) as b:
        b.broker.manager.create_topic("orders", 6)
        yield b


def produce(address: str, n: int, topic: str = "orders", start: int = 0) -> None:
    with Producer(address, linger_ms=1) as p:
        for i in range(start, start + n):
            p.send(topic, b"%d" % i, partition=i % 6)
        p.flush()


class SlowFirstFetchOffsets(Transport):
    """A connection whose first FetchOffsets call sets ``entered`` and waits for ``go``."""

    def __init__(self, address: str, entered: threading.Event, go: threading.Event) -> None:
        super().__init__(address)
        self.entered, self.go = entered, go

    def fetch_offsets(self, request, *, timeout):
        if not self.entered.is_set():
            self.entered.set()
            self.go.wait(10)
        return super().fetch_offsets(request, timeout=timeout)


class Runner:
    """A consumer in a thread collecting values."""

    def __init__(self, address: str, group: str = "billing", **kw) -> None:
        self.seen: list[bytes] = []
        self.c = Consumer(address, group=group, auto_offset_reset="earliest", **{**FAST, **kw})
        self.c.subscribe(["orders"])
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for rec in self.c.poll(timeout=0.1):
                self.seen.append(rec.value)

    def close(self) -> None:
        self.stop.set()
        self.t.join(5)
        self.c.close()


def test_three_members_share_six_partitions_and_see_everything(broker):
    produce(broker.address, 600)
    runners = [Runner(broker.address) for _ in range(3)]
    try:
        wait_for(lambda: sum(len(r.seen) for r in runners) >= 600, what="all records")
        wait_for(lambda: sorted(len(r.c.assignment()) for r in runners) == [2, 2, 2])
        owned = [r.c.assignment() for r in runners]
        assert set().union(*owned) == {TopicPartition("orders", p) for p in range(6)}
        values = sorted(int(v) for r in runners for v in r.seen)
        assert values[:600] == list(range(600)) or set(values) == set(range(600))
    finally:
        for r in runners:
            r.close()
    # every position was committed on close
    d = broker.broker.coordinator.describe_group("billing")
    assert sum(p.lag for p in d.partitions) == 0


def test_two_groups_each_receive_every_record(broker):
    produce(broker.address, 120)
    a, b = Runner(broker.address, group="a"), Runner(broker.address, group="b")
    try:
        wait_for(lambda: len(a.seen) >= 120 and len(b.seen) >= 120)
        assert sorted(a.seen) == sorted(b.seen)
    finally:
        a.close()
        b.close()


def test_rejoin_resumes_from_committed_offsets(broker):
    produce(broker.address, 60)
    r = Runner(broker.address)
    wait_for(lambda: len(r.seen) >= 60)
    r.close()
    produce(broker.address, 30, start=60)
    r2 = Runner(broker.address)
    try:
        wait_for(lambda: len(r2.seen) >= 30)
        time.sleep(0.3)
        assert sorted(int(v) for v in r2.seen) == list(range(60, 90))
    finally:
        r2.close()


def test_revocation_callback_and_commit_before_moving(broker):
    produce(broker.address, 60)
    revoked: list[set] = []
    assigned: list[set] = []
    a = Runner(
        broker.address, on_revoke=revoked.append, on_assign=assigned.append, enable_auto_commit=True
    )
    wait_for(lambda: len(a.seen) >= 60)
    b = Runner(broker.address)
    try:
        wait_for(lambda: len(a.c.assignment()) == 3 and len(b.c.assignment()) == 3)
        assert len(revoked) == 1 and len(revoked[0]) == 3
        assert assigned[0] == {TopicPartition("orders", p) for p in range(6)}
        time.sleep(0.5)
        assert b.seen == []  # a committed everything before letting go
    finally:
        a.close()
        b.close()


def test_explicit_commit_sync_async_and_committed(broker):
    produce(broker.address, 12)
    c = Consumer(
        broker.address,
        group="manual",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **{k: v for k, v in FAST.items() if k != "auto_commit_interval_ms"},
    )
    try:
        c.subscribe(["orders"])
        got = []
        wait_for(lambda: got.extend(c.poll(timeout=0.1)) or len(got) >= 12)
        tp0 = TopicPartition("orders", 0)
        c.commit({tp0: 1})
        assert c.committed([tp0])[tp0].offset == 1
        c.commit()
        assert c.committed([tp0])[tp0].offset == 2
        results = []
        fut = c.commit_async({tp0: 2}, callback=lambda offs, err: results.append((offs, err)))
        fut.result(5)
        assert results == [({tp0: 2}, None)]
        with pytest.raises(LogstreamError, match="negative"):
            c.commit({tp0: -4})
        with pytest.raises(LogstreamError):
            c.commit({TopicPartition("orders", 99): 0})
    finally:
        c.close()
    assert (
        broker.broker.coordinator.fetch_offsets("manual")[TopicPartition("orders", 0)].offset == 2
    )


def test_commit_after_being_fenced_fails_clearly(tmp_path):
    """A static member's place is taken over by a new incarnation with the same instance id
    (as when a restarted process rejoins): the broker fences the old member id, and the old
    incarnation's next commit is rejected by the broker. Heartbeats are 10 s apart here, so
    the old member commits before a heartbeat could tell it that it was fenced."""
    slow_beats = dict(FAST, session_timeout_ms=30_000)
    with run_broker(tmp_path / "data", group_heartbeat_interval_ms=10_000) as b:
        b.broker.manager.create_topic("orders", 6)
        old = Consumer(b.address, group="g", instance_id="i1", **slow_beats)
        new = Consumer(b.address, group="g", instance_id="i1", **slow_beats)
        try:
            old.subscribe(["orders"])
            wait_for(lambda: old.poll(0.05) is not None and len(old.assignment()) == 6)
            fenced_id = old.group_metadata().member_id
            new.subscribe(["orders"])
            wait_for(
                lambda: new.poll(0.05) is not None and len(new.assignment()) == 6,
                what="the takeover",
            )
            (member,) = b.broker.coordinator.describe_group("g").members
            assert member.member_id not in ("", fenced_id)
            assert old.group_metadata().member_id == fenced_id  # not told yet
            with pytest.raises(CommitFailedError, match="rejected"):
                old.commit({TopicPartition("orders", 0): 0})
            new.commit({TopicPartition("orders", 0): 0})  # the new incarnation's commit counts
        finally:
            old.close()
            new.close()


def test_a_consumer_that_stops_polling_leaves_and_its_next_poll_rejoins(broker, caplog):
    c = Consumer(broker.address, group="slow", max_poll_interval_ms=300, **FAST)
    try:
        c.subscribe(["orders"])
        wait_for(lambda: c.poll(0.05) is not None and len(c.assignment()) == 6)
        coordinator = broker.broker.coordinator
        with caplog.at_level("WARNING", logger="logstream.client.group"):
            # "processing" for longer than the bound: the heartbeat thread leaves the group
            wait_for(
                lambda: (
                    not any(g.group_id == "slow" and g.members for g in coordinator.list_groups())
                ),
                what="the leave",
            )
            assert any("leaving the group" in r.getMessage() for r in caplog.records)
            assert len(c.assignment()) == 6  # nothing is taken away behind the application
            wait_for(
                lambda: c.poll(0.05) is not None and len(c.assignment()) == 6,
                what="the rejoin",
            )
        assert any("rejoining" in r.getMessage() for r in caplog.records)
        assert len(coordinator.describe_group("slow").members) == 1
        assert sum("leaving the group" in r.getMessage() for r in caplog.records) == 1
    finally:
        c.close()


def test_fenced_member_drops_its_partitions_and_rejoins(broker):
    lost = []
    c = Consumer(broker.address, group="f", on_revoke=lost.append, **FAST)
    try:
        c.subscribe(["orders"])
        wait_for(lambda: c.poll(0.05) is not None and len(c.assignment()) == 6)
        old = c.group_metadata().member_id
        coord = broker.broker.coordinator
        with coord.groups.locked("f") as group:
            assert group is not None
            group.members[old].deadline = -1.0  # as if its session ran out
        coord.expire()
        wait_for(
            lambda: (
                c.poll(0.05) is not None
                and c.group_metadata().member_id not in ("", old)
                and len(c.assignment()) == 6
            ),
            what="rejoin",
        )
        assert lost and len(lost[0]) == 6
    finally:
        c.close()


def test_commit_of_a_partition_held_by_another_member_fails_clearly(broker):
    a = Consumer(broker.address, group="two", auto_offset_reset="earliest", **FAST)
    b = Consumer(broker.address, group="two", auto_offset_reset="earliest", **FAST)
    try:
        a.subscribe(["orders"])
        b.subscribe(["orders"])
        wait_for(
            lambda: (
                a.poll(0.05) is not None
                and b.poll(0.05) is not None
                and len(a.assignment()) == 3
                and len(b.assignment()) == 3
            ),
            what="a 3/3 split",
        )
        theirs = min(b.assignment())
        b.commit({theirs: 0})
        with pytest.raises(CommitFailedError, match="not assigned to member"):
            a.commit({theirs: 0})
    finally:
        a.close()
        b.close()


def test_partitions_being_taken_on_are_reported_owned_until_applied(broker):
    """The application thread is between receiving its assignment and starting to read it
    (fetching committed offsets) when a second member joins. The heartbeat thread must keep
    reporting those partitions as owned: otherwise the broker releases half of them to the
    new member while this consumer goes on to read all of them (two owners)."""
    produce(broker.address, 60)
    entered, go = threading.Event(), threading.Event()
    # A's connection holds its first FetchOffsets (committed offsets of the assignment) until
    # `go`: the application thread is stuck taking on its partitions.
    transport = SlowFirstFetchOffsets(broker.address, entered, go)
    a = Consumer(transport, group="race", auto_offset_reset="earliest", **FAST)
    b = None

    def poll_until_applied() -> None:
        deadline = time.monotonic() + 20
        while not a.assignment() and time.monotonic() < deadline:
            a.poll(0.05)

    poller = threading.Thread(target=poll_until_applied, daemon=True)
    try:
        a.subscribe(["orders"])
        poller.start()
        assert entered.wait(10), "A never started taking on its assignment"
        assert a.assignment() == set()  # still applying: fetching committed offsets
        b = Runner(broker.address, group="race")
        wait_for(
            lambda: broker.broker.coordinator.describe_group("race").members.__len__() == 2,
            what="B joined",
        )
        time.sleep(0.6)  # several heartbeats of A (every 50 ms while reconciling) and of B
        assert b.c.assignment() == set(), "a partition A is about to read was given to B"
        held_by_b = [
            m_.assignment
            for m_ in broker.broker.coordinator.describe_group("race").members
            if m_.member_id != a.group_metadata().member_id
        ]
        assert held_by_b == [()]
        go.set()
        poller.join(5)
        assert len(a.assignment()) == 6  # it applied what it had received
        stop = threading.Event()

        def keep_polling() -> None:
            while not stop.is_set():
                a.poll(0.05)

        t = threading.Thread(target=keep_polling, daemon=True)
        t.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            mine, theirs = a.assignment(), b.c.assignment()
            assert not (mine & theirs), f"double ownership: {sorted(mine & theirs)}"
            if len(mine) == 3 and len(theirs) == 3:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("no 3/3 split")
        stop.set()
        t.join(5)
    finally:
        go.set()
        if b is not None:
            b.close()
        a.close()
        transport.close()


def test_group_metadata_names_the_member_the_broker_knows(broker):
    with Consumer(broker.address, group="meta", **FAST) as c:
        assert c.group_metadata() == GroupMetadata("meta", "", -1)
        c.subscribe(["orders"])
        wait_for(lambda: c.poll(0.05) is not None and len(c.assignment()) == 6)
        mine = c.group_metadata()
        (member,) = broker.broker.coordinator.describe_group("meta").members
        assert (mine.group_id, mine.member_id) == ("meta", member.member_id)
        assert mine.member_epoch > 0
    with Consumer(broker.address) as plain, pytest.raises(InvalidConfigError, match="group="):
        plain.group_metadata()
