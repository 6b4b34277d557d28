"""confluent-kafka's AdminClient against the Kafka listener: topics are logstream topics."""

from __future__ import annotations

import pytest

from tests.kafka_listener.conftest import KafkaBroker, wait_until

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    ConfigResource,
    NewPartitions,
    NewTopic,
)


def test_create_grow_describe_and_delete_topics(kafka_broker: KafkaBroker) -> None:
    client = AdminClient({"bootstrap.servers": kafka_broker.kafka})
    futures = client.create_topics(
        [NewTopic("adm-a", 3, 1, config={"retention.ms": "3600000"}), NewTopic("adm-b", 1, 1)]
    )
    for f in futures.values():
        f.result(30)
    listed = client.list_topics(timeout=10).topics
    assert len(listed["adm-a"].partitions) == 3 and "adm-b" in listed

    again = client.create_topics([NewTopic("adm-a", 1, 1)])["adm-a"]
    with pytest.raises(ck.KafkaException) as info:
        again.result(30)
    assert info.value.args[0].code() == ck.KafkaError.TOPIC_ALREADY_EXISTS

    client.create_partitions([NewPartitions("adm-a", 5)])["adm-a"].result(30)
    wait_until(
        lambda: len(client.list_topics("adm-a", timeout=10).topics["adm-a"].partitions) == 5,
        20,
        "five partitions",
    )

    resource = ConfigResource(ConfigResource.Type.TOPIC, "adm-a")
    configs = client.describe_configs([resource])[resource].result(30)
    assert configs["retention_ms"].value == "3600000"

    for f in client.delete_topics(["adm-a", "adm-b"]).values():
        f.result(30)
    wait_until(lambda: "adm-a" not in client.list_topics(timeout=10).topics, 20, "adm-a gone")


def test_replication_factor_above_one_is_refused(kafka_broker: KafkaBroker) -> None:
    client = AdminClient({"bootstrap.servers": kafka_broker.kafka})
    future = client.create_topics([NewTopic("adm-rf3", 1, 3)])["adm-rf3"]
    with pytest.raises(ck.KafkaException):
        future.result(30)
