"""Internal topics (``__consumer_offsets``) belong to the broker: clients may fetch and describe
them; create, delete, produce, alter and add partitions are refused with
INTERNAL_TOPIC_READ_ONLY, and a refused delete or forged record cannot touch a group's offsets."""

from __future__ import annotations

import grpc
from broker_helpers import Client

from logstream.codec import encode_batch
from logstream.coordinator.offsets import DEFAULT_OFFSETS_PARTITIONS, OFFSETS_TOPIC
from logstream.errors import InternalTopicReadOnlyError
from logstream.protocol import admin_pb2, group_pb2, group_pb2_grpc
from logstream.protocol.status import grpc_code_for
from logstream.testing.broker import BrokerProcess

REFUSED = InternalTopicReadOnlyError.code


def _commit(channel: grpc.Channel, group: str, topic: str, offset: int) -> None:
    stub = group_pb2_grpc.GroupStub(channel)
    resp = stub.CommitOffsets(
        group_pb2.CommitOffsetsRequest(
            group_id=group,
            member_epoch=-1,
            offsets=[group_pb2.OffsetCommit(topic=topic, partition=0, offset=offset)],
        ),
        timeout=10,
    )
    assert resp.error_code == 0 and not any(p.error_code for p in resp.partitions), resp


def _committed(channel: grpc.Channel, group: str) -> dict[tuple[str, int], int]:
    stub = group_pb2_grpc.GroupStub(channel)
    resp = stub.FetchOffsets(group_pb2.FetchOffsetsRequest(group_id=group), timeout=10)
    return {(o.topic, o.partition): o.offset for o in resp.offsets}


def _ends(client: Client) -> list[int]:
    parts = range(DEFAULT_OFFSETS_PARTITIONS)
    return [client.fetch(OFFSETS_TOPIC, p).high_watermark for p in parts]


def test_the_code_maps_to_permission_denied():
    assert grpc_code_for(InternalTopicReadOnlyError("x")) == grpc.StatusCode.PERMISSION_DENIED


def test_every_client_write_to_an_internal_topic_is_refused(client):
    delete = client.admin.DeleteTopics(admin_pb2.DeleteTopicsRequest(names=[OFFSETS_TOPIC]))
    assert delete.topics[0].error_code == REFUSED, delete
    assert "internal" in delete.topics[0].error_message

    produced = client.produce(OFFSETS_TOPIC, 0, encode_batch([b"forged"], keys=[b"k"]))
    assert produced.error_code == REFUSED and not produced.results, produced

    alter = client.admin.AlterTopicConfig(
        admin_pb2.AlterTopicConfigRequest(name=OFFSETS_TOPIC, set={"retention_ms": "1"})
    )
    assert alter.result.error_code == REFUSED
    reset = client.admin.AlterTopicConfig(
        admin_pb2.AlterTopicConfigRequest(name=OFFSETS_TOPIC, reset=["retention_ms"])
    )
    assert reset.result.error_code == REFUSED

    grow = client.admin.CreatePartitions(
        admin_pb2.CreatePartitionsRequest(name=OFFSETS_TOPIC, total_count=500)
    )
    assert grow.result.error_code == REFUSED

    assert client.create_topic("__transaction_state").error_code == REFUSED
    created = client.admin.CreateTopics(
        admin_pb2.CreateTopicsRequest(
            topics=[admin_pb2.TopicSpec(name="__later", partitions=1)], validate_only=True
        )
    )
    assert created.topics[0].error_code == REFUSED

    listed = client.admin.ListTopics(admin_pb2.ListTopicsRequest(include_internal=True))
    names = {t.name: t for t in listed.topics}
    assert names[OFFSETS_TOPIC].internal and "__transaction_state" not in names
    assert "__later" not in names


def test_internal_topics_stay_readable(client):
    described = client.admin.DescribeTopics(admin_pb2.DescribeTopicsRequest(names=[OFFSETS_TOPIC]))
    topic = described.topics[0]
    assert topic.error_code == 0 and topic.internal and topic.partitions
    assert client.fetch(OFFSETS_TOPIC, 0).error_code == 0


def test_a_refused_delete_or_forged_record_leaves_group_offsets_alone(tmp_path):
    with BrokerProcess(tmp_path / "data") as broker:
        client = Client(broker.address)
        try:
            client.create_topic("orders")
            client.produce("orders", 0, encode_batch([b"r"] * 50))
            _commit(client.channel, "billing", "orders", 42)
            offsets_before = _ends(client)
            refused = client.admin.DeleteTopics(
                admin_pb2.DeleteTopicsRequest(names=[OFFSETS_TOPIC])
            )
            assert refused.topics[0].error_code == REFUSED
            for p in range(DEFAULT_OFFSETS_PARTITIONS):
                forged = client.produce(OFFSETS_TOPIC, p, encode_batch([b"x"], keys=[b"y"]))
                assert forged.error_code == REFUSED
            assert _ends(client) == offsets_before
        finally:
            client.close()
        broker.restart()
        client = Client(broker.address)
        try:
            assert _committed(client.channel, "billing") == {("orders", 0): 42}
        finally:
            client.close()


def test_produce_never_auto_creates_an_internal_topic(tmp_path):
    with BrokerProcess(tmp_path / "data", auto_create_topics=True) as broker:
        client = Client(broker.address)
        try:
            res = client.produce("__sneaky", 0, encode_batch([b"x"]))
            assert res.error_code == REFUSED
            listed = client.admin.ListTopics(admin_pb2.ListTopicsRequest(include_internal=True))
            assert "__sneaky" not in {t.name for t in listed.topics}
        finally:
            client.close()
