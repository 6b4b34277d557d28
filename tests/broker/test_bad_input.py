"""Every kind of bad input gets its error code, and the broker keeps serving afterwards."""

from __future__ import annotations

import grpc
import pytest

from logstream.codec import encode_batch
from logstream.errors import (
    CorruptRecordError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidProducerNameError,
    InvalidRequestError,
    InvalidRequiredAcksError,
    InvalidTopicError,
    KafkaStorageError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logstream.protocol import admin_pb2, log_pb2
from logstream.protocol.status import ERROR_CODE_KEY, client_message
from logstream.storage import TopicConfig
from logstream.storage.config import MAX_TOPIC_NAME_LENGTH

CORRUPT_CODES = {CorruptRecordError.code, 87}  # CORRUPT_MESSAGE or INVALID_RECORD


@pytest.fixture(autouse=True)
def still_serving(client):
    yield
    client.assert_serving()


def test_unknown_topic(client, topic):
    res = client.produce(topic, 0, encode_batch([b"x"]))
    assert res.error_code == UnknownTopicOrPartitionError.code and not res.results
    assert client.fetch(topic, 0).error_code == UnknownTopicOrPartitionError.code


def test_unknown_partition(client, topic):
    client.create_topic(topic, partitions=2)
    assert (
        client.produce(topic, 2, encode_batch([b"x"])).error_code
        == UnknownTopicOrPartitionError.code
    )
    assert (
        client.produce(topic, -1, encode_batch([b"x"])).error_code
        == UnknownTopicOrPartitionError.code
    )
    assert client.fetch(topic, 7).error_code == UnknownTopicOrPartitionError.code


def test_corrupt_crc_is_rejected_and_nothing_is_stored(client, topic):
    client.create_topic(topic)
    batch = bytearray(encode_batch([b"hello", b"world"]))
    batch[-3] ^= 0xFF
    res = client.produce(topic, 0, bytes(batch))
    assert res.results[0].error_code in CORRUPT_CODES, res
    assert client.fetch(topic, 0).high_watermark == 0


def test_truncated_batch(client, topic):
    client.create_topic(topic)
    batch = encode_batch([b"hello", b"world"])
    for cut in (10, 71, len(batch) - 1):
        res = client.produce(topic, 0, batch[:cut])
        assert res.results[0].error_code in CORRUPT_CODES, (cut, res)
    assert client.fetch(topic, 0).high_watermark == 0


def test_garbage_bytes(client, topic):
    client.create_topic(topic)
    for garbage in (b"", b"\x00" * 200, b"garbage" * 50, bytes(range(256)) * 4):
        res = client.produce(topic, 0, garbage)
        assert res.results[0].error_code in CORRUPT_CODES, (garbage[:10], res)
    assert client.fetch(topic, 0).high_watermark == 0


def test_two_batches_in_one_element_are_rejected(client, topic):
    client.create_topic(topic)
    res = client.produce(topic, 0, encode_batch([b"a"]) + encode_batch([b"b"]))
    assert res.results[0].error_code == CorruptRecordError.code


def test_failed_batch_stops_the_partition_prefix(client, topic):
    client.create_topic(topic)
    good = encode_batch([b"ok"])
    res = client.produce(topic, 0, good, b"junk" * 30, good)
    codes = [r.error_code for r in res.results]
    assert codes[0] == 0 and codes[1] in CORRUPT_CODES and codes[2] == codes[1]
    assert client.fetch(topic, 0).high_watermark == 1


def test_batch_too_large(client, topic):
    client.create_topic(topic)  # the shared broker's max_batch_bytes is 64 KiB
    res = client.produce(topic, 0, encode_batch([b"x" * 100_000]))
    assert res.results[0].error_code == MessageTooLargeError.code
    client.create_topic(topic + "-big", max_batch_bytes=200_000)
    ok = client.produce(topic + "-big", 0, encode_batch([b"x" * 100_000]))
    assert ok.results[0].error_code == 0


def test_request_above_the_grpc_message_limit_is_resource_exhausted(client, topic):
    client.create_topic(topic)
    with pytest.raises(grpc.RpcError) as info:
        client.produce(topic, 0, b"x" * (65 << 20), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_bad_topic_name(client):
    for name in ("bad name", "", "x" * 300, "..", "ünïcode"):
        assert client.create_topic(name).error_code == InvalidTopicError.code, name


def test_topic_exists(client, topic):
    assert client.create_topic(topic).error_code == 0
    again = client.create_topic(topic)
    assert again.error_code == TopicAlreadyExistsError.code and topic in again.error_message


def test_invalid_acks_is_a_request_level_error(client, topic):
    client.create_topic(topic)
    req = log_pb2.ProduceRequest(
        acks=42,
        partitions=[log_pb2.PartitionProduceData(topic=topic, batches=[encode_batch([b"x"])])],
    )
    with pytest.raises(grpc.RpcError) as info:
        client.log.Produce(req, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (ERROR_CODE_KEY, str(InvalidRequiredAcksError.code)) in tuple(
        info.value.trailing_metadata()
    )
    assert client.fetch(topic, 0).high_watermark == 0


def test_offset_out_of_range_names_the_earliest_offset(client, topic):
    client.create_topic(topic)
    client.produce(topic, 0, encode_batch([b"a", b"b"]))
    for offset in (3, 1000, -5):
        res = client.fetch(topic, 0, offset)
        assert res.error_code == OffsetOutOfRangeError.code
        assert "earliest" in res.error_message and "0" in res.error_message, res.error_message


def test_out_of_order_sequence(client, topic):
    client.create_topic(topic)
    pid = client.log.InitProducerId(log_pb2.InitProducerIdRequest())
    ids = {"producer_id": pid.producer_id, "producer_epoch": pid.producer_epoch}
    first = client.produce(topic, 0, encode_batch([b"a"], base_sequence=0, **ids))
    assert first.results[0].error_code == 0
    gap = client.produce(topic, 0, encode_batch([b"c"], base_sequence=5, **ids))
    assert gap.results[0].error_code == OutOfOrderSequenceError.code
    assert client.fetch(topic, 0).high_watermark == 1


def test_bad_config_key_and_value(client, topic):
    assert client.create_topic(topic, bogus_key=1).error_code == InvalidConfigError.code
    assert client.create_topic(topic, retention_ms="soon").error_code == InvalidConfigError.code
    assert (
        client.create_topic(topic, flush_policy="sometimes").error_code == InvalidConfigError.code
    )
    client.create_topic(topic)
    resp = client.admin.AlterTopicConfig(
        admin_pb2.AlterTopicConfigRequest(name=topic, set={"nope": "1"})
    )
    assert resp.result.error_code == InvalidConfigError.code


def test_negative_or_shrinking_partitions(client, topic):
    assert client.create_topic(topic, partitions=-1).error_code == InvalidPartitionsError.code
    client.create_topic(topic, partitions=3)
    shrink = client.admin.CreatePartitions(
        admin_pb2.CreatePartitionsRequest(name=topic, total_count=2)
    )
    assert shrink.result.error_code == InvalidPartitionsError.code


def test_negative_fetch_arguments(client, topic):
    client.create_topic(topic)
    with pytest.raises(grpc.RpcError) as info:
        client.fetch(topic, 0, 0, max_wait_ms=-1)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert client.fetch(topic, 0, 0, max_bytes=-1).error_code == InvalidRequestError.code


def test_list_offsets_errors(client, topic):
    client.create_topic(topic)
    req = log_pb2.ListOffsetsRequest(
        partitions=[
            log_pb2.ListOffsetsPartition(topic=topic, partition=0, timestamp=-7),
            log_pb2.ListOffsetsPartition(topic=topic, partition=9, timestamp=-1),
        ]
    )
    resp = client.log.ListOffsets(req)
    assert [p.error_code for p in resp.partitions] == [
        InvalidRequestError.code,
        UnknownTopicOrPartitionError.code,
    ]


# -- names that must fit the file system, errors that must not disclose it -------------------


def _leftovers(data_dir, fragment: str) -> list[str]:
    found = [p.name for p in data_dir.iterdir() if fragment in p.name]
    found += [p.name for p in (data_dir / "meta").iterdir() if fragment in p.name]
    return found


def test_the_longest_allowed_topic_name_works_end_to_end(client, broker, topic):
    name = (topic + "-" + "n" * 300)[:MAX_TOPIC_NAME_LENGTH]
    assert client.create_topic(name, partitions=2).error_code == 0
    assert client.produce(name, 1, encode_batch([b"x"])).results[0].error_code == 0
    deleted = client.admin.DeleteTopics(admin_pb2.DeleteTopicsRequest(names=[name]))
    assert deleted.topics[0].error_code == 0, deleted
    assert _leftovers(broker.data_dir, topic) == []
    assert client.create_topic(name).error_code == 0  # and again, on a clean slate


@pytest.mark.parametrize("length", [MAX_TOPIC_NAME_LENGTH + 1, 247, 248, 249])
def test_a_name_too_long_for_the_file_system_is_an_invalid_topic(client, broker, length):
    name = ("long-" + "x" * length)[:length]
    res = client.create_topic(name)
    assert res.error_code == InvalidTopicError.code, res
    assert str(broker.data_dir) not in res.error_message
    assert _leftovers(broker.data_dir, name[:40]) == []


def test_a_storage_failure_hides_server_paths_and_leaves_nothing_behind(client, broker, topic):
    # A directory where the metadata's temporary file goes: the write fails with EISDIR,
    # whose message names the file (running as root, a read-only mode would not stop it).
    blocker = broker.data_dir / "meta" / f"{topic}.json.tmp"
    blocker.mkdir()
    try:
        res = client.create_topic(topic, partitions=3)
    finally:
        blocker.rmdir()
    assert res.error_code == KafkaStorageError.code, res
    assert "/" not in res.error_message.replace("<path>", ""), res.error_message
    assert "<path>" in res.error_message
    assert _leftovers(broker.data_dir, topic) == []
    assert client.create_topic(topic).error_code == 0  # nothing half-made is in the way


# -- config values that cannot work ------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"retention_ms": "9" * 401},
        {"retention_ms": str(2**63)},
        {"retention_bytes": "-2"},
        {"segment_ms": "0"},
        {"segment_ms": str(2**53)},
        {"flush_interval_ms": "-1"},
        {"producer_id_expiration_ms": str(10**30)},
        {"segment_bytes": "4096", "max_batch_bytes": "8192"},
        {"max_batch_bytes": str((64 << 20) + 1)},  # over the default 64 MiB segments
    ],
)
def test_config_that_cannot_work_is_refused_at_create_and_alter(client, topic, config):
    created = client.create_topic(topic, **config)
    assert created.error_code == InvalidConfigError.code, (config, created)
    assert len(created.error_message) < 300
    assert client.create_topic(topic).error_code == 0
    altered = client.admin.AlterTopicConfig(
        admin_pb2.AlterTopicConfigRequest(name=topic, set=config)
    )
    assert altered.result.error_code == InvalidConfigError.code, (config, altered)
    described = client.admin.DescribeTopics(admin_pb2.DescribeTopicsRequest(names=[topic]))
    assert described.topics[0].config["retention_ms"] == str(TopicConfig().retention_ms)


def test_shrinking_segments_below_the_topics_own_max_batch_is_refused(client, topic):
    created = client.create_topic(topic, segment_bytes=1 << 20, max_batch_bytes=1 << 19)
    assert created.error_code == 0
    altered = client.admin.AlterTopicConfig(
        admin_pb2.AlterTopicConfigRequest(name=topic, set={"segment_bytes": str(1 << 18)})
    )
    assert altered.result.error_code == InvalidConfigError.code
    assert "max_batch_bytes" in altered.result.error_message


# -- producer names ----------------------------------------------------------------------------


def test_producer_names_are_limited_in_length(client):
    ok = client.log.InitProducerId(log_pb2.InitProducerIdRequest(producer_name="n" * 255))
    assert ok.producer_id >= 0
    for name in ("n" * 256, "é" * 128, "x" * 100_000):
        with pytest.raises(grpc.RpcError) as info:
            client.log.InitProducerId(log_pb2.InitProducerIdRequest(producer_name=name))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (ERROR_CODE_KEY, str(InvalidProducerNameError.code)) in tuple(
            info.value.trailing_metadata()
        )


@pytest.mark.parametrize(
    ("message", "sent"),
    [
        (
            "writing /srv/data/meta/t.json.tmp: [Errno 21] Is a directory: '/srv/data/x'",
            "writing <path>: [Errno 21] Is a directory: '<path>'",
        ),
        ("segment (/d/t-0/00000000000000000000.log) damaged.", "segment (<path>) damaged."),
        ("topic 'a/b' and ../up and 5/6 stay", "topic 'a/b' and ../up and 5/6 stay"),
    ],
)
def test_client_messages_never_carry_absolute_paths(message, sent):
    assert client_message(KafkaStorageError(message)) == f"KAFKA_STORAGE_ERROR: {sent}"


def test_broker_topic_defaults_that_cannot_work_refuse_the_start():
    from logstream.broker import BrokerConfig

    with pytest.raises(InvalidConfigError):
        BrokerConfig(topic_defaults={"segment_bytes": 4096, "max_batch_bytes": 8192})
    with pytest.raises(InvalidConfigError):
        BrokerConfig(topic_defaults={"retention_ms": 2**60})
