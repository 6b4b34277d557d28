"""End to end with real processes: a broker subprocess and consumer-member subprocesses,
SIGKILL included. Marked slow; each test takes a few seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import grpc
import pytest

from logstream.client import Consumer, Producer
from logstream.client.group_admin import GroupAdmin
from logstream.errors import (
    GroupIdNotFoundError,
    IllegalGenerationError,
    NonEmptyGroupError,
    OffsetOutOfRangeError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from logstream.protocol import group_pb2, group_pb2_grpc
from logstream.protocol.status import error_from_rpc
from logstream.testing.broker import BrokerProcess
from logstream.testing.wait import wait_for
from logstream.types import TopicPartition

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("worker.py")
FENCED = (IllegalGenerationError, UnknownMemberIdError)
SESSION_MS = 2000


@pytest.fixture
def broker(tmp_path):
    proc = BrokerProcess(
        tmp_path / "data",
        group_min_session_timeout_ms=500,
        group_heartbeat_interval_ms=200,
        group_expiry_check_interval_ms=50,
    ).start()
    from logstream.client import Admin

    with Admin(proc.address) as admin:
        admin.create_topic("orders", 6)
    yield proc
    proc.terminate()


class Worker:
    def __init__(self, address: str, out: Path, group: str = "billing", instance: str = ""):
        self.out = out
        cmd = [
            sys.executable,
            str(WORKER),
            address,
            group,
            str(out),
            "--session-ms",
            str(SESSION_MS),
        ]
        if instance:
            cmd += ["--instance", instance]
        env = {**os.environ, "LOGSTREAM_ROOT": str(ROOT), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(cmd, env=env)

    def lines(self) -> list[str]:
        try:
            return self.out.read_text().splitlines()
        except FileNotFoundError:
            return []

    def records(self) -> list[tuple[int, int, int]]:
        out = []
        for line in self.lines():
            if line.startswith("R "):
                _, p, o, v = line.split()
                out.append((int(p), int(o), int(v)))
        return out

    def assignment(self) -> set[int]:
        last = ""
        for line in self.lines():
            if line.startswith("A "):
                last = line[2:]
        return {int(x) for x in last.split(",") if x}

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


# Worker processes take seconds to start under load.
wait_for = partial(wait_for, timeout=30.0)


def produce(address: str, values: range) -> None:
    with Producer(address, linger_ms=1) as p:
        for i in values:
            p.send("orders", b"%d" % i, partition=i % 6)
        p.flush()


@pytest.mark.serial  # timing-sensitive: run alone by `make test` (docs/decisions/0040)
def test_members_share_partitions_and_nothing_is_lost_across_a_sigkill(broker, tmp_path):
    workers = [Worker(broker.address, tmp_path / f"w{i}.txt") for i in range(3)]
    try:
        wait_for(
            lambda: sorted(len(w.assignment()) for w in workers) == [2, 2, 2],
            what="3 members with 2 partitions each",
        )
        assert set().union(*(w.assignment() for w in workers)) == set(range(6))
        produce(broker.address, range(0, 600))
        wait_for(lambda: sum(len(w.records()) for w in workers) >= 600, what="first 600")

        # Keep producing while a member dies without warning.
        stop = threading.Event()
        produced = [600]

        def keep_producing() -> None:
            with Producer(broker.address, linger_ms=1) as p:
                while not stop.is_set():
                    i = produced[0]
                    p.send("orders", b"%d" % i, partition=i % 6)
                    produced[0] += 1
                    if i % 50 == 0:
                        p.flush()
                        time.sleep(0.02)
                p.flush()

        t = threading.Thread(target=keep_producing)
        t.start()
        victim, others = workers[0], workers[1:]
        moved = victim.assignment()
        victim.kill()
        killed_at = time.monotonic()
        before = [len(w.records()) for w in others]
        wait_for(
            lambda: set().union(*(w.assignment() for w in others)) == set(range(6)),
            timeout=SESSION_MS / 1000 + 5,
            what="the killed member's partitions to move",
        )
        took = time.monotonic() - killed_at
        assert took < SESSION_MS / 1000 + 2.0, took
        # The survivors kept consuming during the move.
        assert all(len(w.records()) > b for w, b in zip(others, before, strict=True))
        assert moved <= set().union(*(w.assignment() for w in others))

        # The killed member comes back and gets its share again.
        workers[0] = Worker(broker.address, tmp_path / "w0-again.txt")
        wait_for(
            lambda: sorted(len(w.assignment()) for w in workers) == [2, 2, 2],
            what="rebalance after rejoin",
        )
        stop.set()
        t.join()
        total = produced[0]
        wait_for(
            lambda: {r[2] for w in [*workers, victim] for r in w.records()} >= set(range(total)),
            what="every record processed",
        )
    finally:
        for w in workers:
            w.stop()
    # at-least-once: every record, duplicates only around the crash
    values = [r[2] for w in [*workers, victim] for r in w.records()]
    assert set(values) >= set(range(total))
    assert len(values) - total < 400  # re-delivery bounded by what was uncommitted at the crash


def test_two_groups_on_one_topic_each_receive_every_record(broker, tmp_path):
    a = Worker(broker.address, tmp_path / "a.txt", group="a")
    b = Worker(broker.address, tmp_path / "b.txt", group="b")
    try:
        produce(broker.address, range(300))
        wait_for(lambda: len(a.records()) >= 300 and len(b.records()) >= 300)
        assert sorted(r[2] for r in a.records()) == sorted(r[2] for r in b.records())
    finally:
        a.stop()
        b.stop()


def test_static_member_gets_its_partitions_back_without_a_rebalance(broker, tmp_path):
    w1 = Worker(broker.address, tmp_path / "s1.txt", instance="s1")
    w2 = Worker(broker.address, tmp_path / "s2.txt", instance="s2")
    try:
        wait_for(lambda: len(w1.assignment()) == 3 and len(w2.assignment()) == 3)
        with GroupAdmin(broker.address) as admin:
            epoch = admin.describe_group("billing").group_epoch
            mine = w1.assignment()
            w1.kill()
            w1 = Worker(broker.address, tmp_path / "s1-again.txt", instance="s1")
            wait_for(lambda: w1.assignment() == mine, what="same partitions back")
            assert admin.describe_group("billing").group_epoch == epoch
            assert len(w2.assignment()) == 3
    finally:
        w1.stop()
        w2.stop()


def test_offsets_survive_broker_restart_and_describe_reset_and_errors(broker, tmp_path):
    produce(broker.address, range(60))  # 10 per partition
    c = Consumer(broker.address, group="g", auto_offset_reset="earliest", enable_auto_commit=False)
    c.subscribe(["orders"])
    got = []
    wait_for(lambda: got.extend(c.poll(0.1)) or len(got) >= 60)
    c.commit({TopicPartition("orders", p): 7 for p in range(6)})
    with GroupAdmin(broker.address) as admin:
        (stale,) = admin.describe_group("g").members
    c.close()

    broker.restart(kill=True)  # a crash: the offsets must come back from __consumer_offsets
    with GroupAdmin(broker.address) as admin:
        assert admin.committed_offsets("g") == {TopicPartition("orders", p): 7 for p in range(6)}
        d = admin.describe_group("g")
        assert d.state == "Empty"
        assert [(p.partition, p.committed, p.log_end_offset, p.lag) for p in d.partitions] == [
            (p, 7, 10, 3) for p in range(6)
        ]
        assert all(p.time_lag_ms >= 0 for p in d.partitions)
        assert [g.group_id for g in admin.list_groups()] == ["g"]

        plan = admin.reset_offsets("g", "orders", "shift", -5)  # dry run
        assert set(plan.values()) == {2}
        assert admin.committed_offsets("g")[TopicPartition("orders", 0)] == 7
        admin.reset_offsets("g", "orders", "offset", 4, partitions=[0, 1], execute=True)

        c = Consumer(broker.address, group="g", auto_offset_reset="earliest")
        c.subscribe(["orders"])
        resumed = []
        wait_for(lambda: resumed.extend(c.poll(0.1)) or len(resumed) >= 2 * 6 + 4 * 3)
        firsts = {}
        for r in resumed:
            firsts.setdefault(r.partition, r.offset)
        assert firsts == {0: 4, 1: 4, 2: 7, 3: 7, 4: 7, 5: 7}

        # bad input while the group is active
        with pytest.raises(NonEmptyGroupError):
            admin.reset_offsets("g", "orders", "earliest", execute=True)
        with pytest.raises(NonEmptyGroupError):
            admin.delete_group("g")
        with pytest.raises(UnknownTopicOrPartitionError):
            c.commit({TopicPartition("orders", 42): 0})
        with pytest.raises(OffsetOutOfRangeError):
            c.commit({TopicPartition("orders", 0): -1})
        # a zombie (the first member, closed before the crash) and a member claiming the
        # live one's id with an epoch it never had are both fenced
        (live,) = admin.describe_group("g").members
        with grpc.insecure_channel(broker.address) as channel:
            stub = group_pb2_grpc.GroupStub(channel)
            for member_id, epoch in (
                (stale.member_id, stale.member_epoch),
                (live.member_id, live.member_epoch + 1),
            ):
                req = group_pb2.CommitOffsetsRequest(
                    group_id="g",
                    member_id=member_id,
                    member_epoch=epoch,
                    offsets=[group_pb2.OffsetCommit(topic="orders", partition=0, offset=5)],
                )
                with pytest.raises(grpc.RpcError) as refused:
                    stub.CommitOffsets(req, timeout=10)
                assert isinstance(error_from_rpc(refused.value), FENCED), refused.value
        c.close()
        with pytest.raises(GroupIdNotFoundError):
            admin.describe_group("nope")
        admin.delete_group("g")
        assert admin.list_groups() == []
