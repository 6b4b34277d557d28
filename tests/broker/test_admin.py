"""Topic administration over real gRPC: create, list, describe, alter, grow, delete."""

from __future__ import annotations

from logstream.codec import encode_batch
from logstream.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logstream.protocol import admin_pb2


def test_topic_lifecycle_create_list_describe_alter_grow_delete(client, topic):
    assert client.create_topic(topic, partitions=2, retention_ms=3_600_000).error_code == 0
    listed = {
        t.name: t.partitions for t in client.admin.ListTopics(admin_pb2.ListTopicsRequest()).topics
    }
    assert listed[topic] == 2

    client.produce(topic, 1, encode_batch([b"a", b"b"]))
    desc = client.admin.DescribeTopics(admin_pb2.DescribeTopicsRequest(names=[topic])).topics[0]
    assert desc.error_code == 0 and desc.config["retention_ms"] == "3600000"
    assert [p.partition for p in desc.partitions] == [0, 1]
    assert desc.partitions[1].log_end_offset == 2 and desc.partitions[1].size_bytes > 0
    assert desc.partitions[0].log_end_offset == 0

    altered = client.admin.AlterTopicConfig(
        admin_pb2.AlterTopicConfigRequest(
            name=topic, set={"segment_ms": "60000"}, reset=["retention_ms"]
        )
    )
    assert altered.result.error_code == 0
    assert altered.config["segment_ms"] == "60000"
    assert altered.config["retention_ms"] != "3600000"  # back to the broker default

    grown = client.admin.CreatePartitions(
        admin_pb2.CreatePartitionsRequest(name=topic, total_count=5)
    )
    assert grown.result.error_code == 0
    desc = client.admin.DescribeTopics(admin_pb2.DescribeTopicsRequest(names=[topic])).topics[0]
    assert len(desc.partitions) == 5
    assert client.produce(topic, 4, encode_batch([b"new"])).error_code == 0

    deleted = client.admin.DeleteTopics(admin_pb2.DeleteTopicsRequest(names=[topic]))
    assert deleted.topics[0].error_code == 0
    names = {t.name for t in client.admin.ListTopics(admin_pb2.ListTopicsRequest()).topics}
    assert topic not in names
    gone = client.fetch(topic, 0, 0)
    assert gone.error_code == UnknownTopicOrPartitionError.code


def test_describe_all_and_unknown_topic(client, topic):
    client.create_topic(topic)
    all_topics = client.admin.DescribeTopics(admin_pb2.DescribeTopicsRequest()).topics
    assert topic in {t.name for t in all_topics}
    missing = client.admin.DescribeTopics(admin_pb2.DescribeTopicsRequest(names=["nope-" + topic]))
    assert missing.topics[0].error_code == UnknownTopicOrPartitionError.code


def test_create_topics_reports_each_topic_separately(client, topic):
    resp = client.admin.CreateTopics(
        admin_pb2.CreateTopicsRequest(
            topics=[
                admin_pb2.TopicSpec(name=topic, partitions=1),
                admin_pb2.TopicSpec(name="bad name!", partitions=1),
                admin_pb2.TopicSpec(name=topic + "-2", partitions=-3),
            ]
        )
    )
    assert [t.error_code for t in resp.topics] == [0, 17, InvalidPartitionsError.code]


def test_validate_only_creates_nothing(client, topic):
    resp = client.admin.CreateTopics(
        admin_pb2.CreateTopicsRequest(
            topics=[admin_pb2.TopicSpec(name=topic, partitions=2)], validate_only=True
        )
    )
    assert resp.topics[0].error_code == 0
    names = {t.name for t in client.admin.ListTopics(admin_pb2.ListTopicsRequest()).topics}
    assert topic not in names
    client.create_topic(topic)
    again = client.admin.CreateTopics(
        admin_pb2.CreateTopicsRequest(topics=[admin_pb2.TopicSpec(name=topic)], validate_only=True)
    )
    assert again.topics[0].error_code == TopicAlreadyExistsError.code
    bad = client.admin.CreateTopics(
        admin_pb2.CreateTopicsRequest(
            topics=[admin_pb2.TopicSpec(name=topic + "x", config={"bogus": "1"})],
            validate_only=True,
        )
    )
    assert bad.topics[0].error_code == InvalidConfigError.code


def test_zero_partitions_means_the_broker_default(client, topic):
    assert client.create_topic(topic, partitions=0).error_code == 0
    desc = client.admin.DescribeTopics(admin_pb2.DescribeTopicsRequest(names=[topic])).topics[0]
    assert len(desc.partitions) == 1
