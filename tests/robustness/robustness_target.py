"""The broker the robustness tests attack: one real broker process per test module, with
authentication and ACLs on (so the Security service and the refusals of an unknown or
unprivileged principal are reachable):

- ``admin`` is a super user (passes every ACL check, so bad input reaches the handlers);
- ``mallory`` is a valid user with no ACL at all.

Before the module runs, topic ``seed`` (2 partitions) holds known records, group ``seed-g``
has a commit, queue group ``seed-q`` exists and its member ``seed-worker`` holds every
seed record. After the module: the broker still answers
a normal produce + fetch, the seed records read back unchanged, it stops cleanly, and
``logstream.storage.verify`` finds no damage in its data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from logstream.broker.security.credentials import CredentialStore
from logstream.codec import encode_batch, iter_batches
from logstream.protocol import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    group_pb2,
    group_pb2_grpc,
    log_pb2,
    log_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
)
from logstream.storage.verify import verify_data_dir
from logstream.testing.broker import BrokerProcess

SEED_TOPIC = "seed"
SEED_GROUP = "seed-g"
SEED_QUEUE = "seed-q"
SEED_MEMBER = "seed-worker"
SEED_RECORDS = [[f"p{p}-r{i}".encode() for i in range(20)] for p in range(2)]


@dataclass
class Target:
    proc: BrokerProcess
    channel: grpc.Channel
    admin: str
    mallory: str

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.admin}"),)


def _seed(target: Target) -> None:
    ch, md = target.channel, target.md
    admin = admin_pb2_grpc.AdminStub(ch)
    res = admin.CreateTopics(
        admin_pb2.CreateTopicsRequest(topics=[admin_pb2.TopicSpec(name=SEED_TOPIC, partitions=2)]),
        metadata=md,
        timeout=10,
    )
    assert res.topics[0].error_code == 0, res
    log = log_pb2_grpc.LogStub(ch)
    produced = log.Produce(
        log_pb2.ProduceRequest(
            acks=common_pb2.ACKS_FLUSHED,
            partitions=[
                log_pb2.PartitionProduceData(
                    topic=SEED_TOPIC, partition=p, batches=[encode_batch(values)]
                )
                for p, values in enumerate(SEED_RECORDS)
            ],
        ),
        metadata=md,
        timeout=10,
    )
    assert all(r.error_code == 0 for p in produced.partitions for r in p.results), produced
    group = group_pb2_grpc.GroupStub(ch)
    committed = group.CommitOffsets(
        group_pb2.CommitOffsetsRequest(
            group_id=SEED_GROUP,
            member_epoch=-1,
            offsets=[group_pb2.OffsetCommit(topic=SEED_TOPIC, partition=0, offset=5)],
        ),
        metadata=md,
        timeout=10,
    )
    assert committed.error_code == 0, committed
    queue = queue_pb2_grpc.QueueStub(ch)
    queue.CreateQueueGroup(
        queue_pb2.CreateQueueGroupRequest(
            group=SEED_QUEUE,
            topics=[SEED_TOPIC],
            settings=queue_pb2.QueueSettings(start="earliest", lease_ms=600_000),
        ),
        metadata=md,
        timeout=10,
    )
    # a member holds every seed record, so another member's settlement is refused
    queue.Join(queue_pb2.QueueJoinRequest(group=SEED_QUEUE, member_id=SEED_MEMBER), metadata=md)
    held = queue.Fetch(
        queue_pb2.QueueFetchRequest(group=SEED_QUEUE, member_id=SEED_MEMBER, max_records=100),
        metadata=md,
        timeout=10,
    )
    assert sum(len(r.offsets) for r in held.records) == 40, held


def read_partition(target: Target, topic: str, partition: int) -> list[bytes | None]:
    resp = log_pb2_grpc.LogStub(target.channel).Fetch(
        log_pb2.FetchRequest(
            partitions=[log_pb2.FetchPartition(topic=topic, partition=partition, offset=0)]
        ),
        metadata=target.md,
        timeout=10,
    )
    part = resp.partitions[0]
    assert part.error_code == 0, part
    return [b.value(i) for b in iter_batches(part.records) for i in range(len(b))]


def assert_serving(target: Target) -> None:
    """A normal produce then fetch of what it wrote, and the seed data intact."""
    log = log_pb2_grpc.LogStub(target.channel)
    res = log.Produce(
        log_pb2.ProduceRequest(
            partitions=[
                log_pb2.PartitionProduceData(
                    topic=SEED_TOPIC, partition=1, batches=[encode_batch([b"still-alive"])]
                )
            ]
        ),
        metadata=target.md,
        timeout=10,
    )
    result = res.partitions[0].results[0]
    assert result.error_code == 0, res
    values = read_partition(target, SEED_TOPIC, 1)
    assert values[result.base_offset] == b"still-alive"
    for p, expected in enumerate(SEED_RECORDS):
        assert read_partition(target, SEED_TOPIC, p)[: len(expected)] == expected


def start_target(data_dir: Path) -> Iterator[Target]:
    """A seeded broker for one module; checks it is healthy and its data verifies after."""
    store = CredentialStore(data_dir)
    admin, mallory = store.add("admin"), store.add("mallory")
    with BrokerProcess(data_dir, auth=True, acls=True, super_users="admin") as proc:
        channel = grpc.insecure_channel(proc.address)
        t = Target(proc, channel, admin, mallory)
        try:
            _seed(t)
            yield t
            assert_serving(t)
            assert "Traceback" not in proc.output(), proc.output()[-4000:]
        finally:
            channel.close()
        assert proc.terminate() == 0, proc.output()[-4000:]
    assert verify_data_dir(data_dir) == []
