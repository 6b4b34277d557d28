"""A group member's read (``tail --group``) against a real broker: a partition that reached
its stop is paused (no longer fetched) while the others are still read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logstream.client import Admin, Producer
from logstream.replay import timespec as ts
from logstream.replay.member import MemberPlan, MemberRead
from logstream.replay.ranges import Range
from logstream.replay.sources import BrokerSource
from logstream.testing.broker import RunningBroker, run_broker
from logstream.types import Record, TopicPartition

TOPIC = "member-read"
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RunningBroker]:
    with run_broker(tmp_path / "data") as b:
        with Admin(b.address) as admin:
            admin.create_topic(TOPIC, 2)
        yield b


def send(address: str, partition: int, values: list[bytes]) -> None:
    with Producer(address, linger_ms=0) as p:
        for v in values:
            p.send(TOPIC, v, partition=partition)
        p.flush()


def test_a_partition_past_its_stop_is_paused_and_the_others_go_on(broker):
    send(broker.address, 0, [b"a0", b"a1", b"a2", b"a3", b"a4"])
    with Admin(broker.address) as admin:
        source = BrokerSource(broker.address, admin=admin)
        plan = MemberPlan(start=ts.Beginning(), stops={TP0: Range(0, 3)}, follow=True)
        member = MemberRead(source, "pausers", (TOPIC,), plan, now_ms=lambda: 0)
        seen: list[Record] = []
        try:
            reading = member.records()
            first = next(reading)  # joins the group (the source's consumer exists from here on)
            if first is not None:
                seen.append(first)
            deadline = time.monotonic() + 30
            while TP0 not in source.consumer.paused():
                assert time.monotonic() < deadline, "partition 0 was never paused"
                rec = next(reading)
                if rec is not None:
                    seen.append(rec)
            send(broker.address, 1, [b"b0", b"b1"])
            send(broker.address, 0, [b"a5"])
            while [r.value for r in seen if r.partition == 1] != [b"b0", b"b1"]:
                assert time.monotonic() < deadline, f"partition 1 not read: {seen}"
                rec = next(reading)
                if rec is not None:
                    seen.append(rec)
            assert source.consumer.paused() == {TP0}
            assert [r.value for r in seen if r.partition == 0] == [b"a0", b"a1", b"a2"]
            assert member.commit_positions()[TP0] == 3  # the stop: nothing past it counted
        finally:
            source.close()


def test_a_bounded_follower_gives_up_when_other_members_hold_every_partition(broker):
    # consume --group G -e (a follow with --until end) waited forever while another member
    # held the partition; docs/cli.md: "--until end always terminates".
    from logstream.client import Consumer
    from logstream.replay.member import NoPartitionsAssigned

    one = TopicPartition("member-hogged", 0)
    with Admin(broker.address) as admin:
        admin.create_topic(one.topic, 1)
    with Consumer(broker.address, group="hogged", auto_offset_reset="earliest") as hog:
        hog.subscribe([one.topic])
        deadline = time.monotonic() + 30
        while not hog.assignment():  # the hog holds the one partition
            assert time.monotonic() < deadline, "the hog was never assigned"
            hog.poll(0.2)
        with Admin(broker.address) as admin:
            source = BrokerSource(broker.address, admin=admin)
            plan = MemberPlan(start=ts.Beginning(), stops={one: Range(0, 0)}, follow=True)
            member = MemberRead(source, "hogged", (one.topic,), plan, now_ms=lambda: 0)
            member.join_timeout_s = 2.0
            started = time.monotonic()
            try:
                with pytest.raises(NoPartitionsAssigned):
                    for _ in member.records():
                        hog.poll(0.05)  # the hog stays alive and keeps its partition
                        assert time.monotonic() - started < 15, "never gave up"
            finally:
                source.close()
        assert hog.assignment() == {one}
