"""The bad-input catalogue: one row per kind of bad request, over every RPC of every service.

Each row sends raw bytes to one method of a real broker process (``robustness_target``: auth
and ACLs on) and names the exact answer: the gRPC status and the named error code, taken
from the ``logstream-error-code`` trailing metadata when the whole call fails, or from the
row's per-item ``error_code`` field when the call succeeds with a failed item. After the
module the broker must still serve, the seed data must be intact and the data directory
must verify (``robustness_target.start_target``).

Set ``LOGSTREAM_CATALOGUE_SHOW=1`` to print every row's observed outcome.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from robustness_target import SEED_GROUP, SEED_QUEUE, SEED_TOPIC, Target, assert_serving
from robustness_wire import METHODS, call, field_bytes, field_varint

from logstream.codec import encode_batch
from logstream.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    CorruptRecordError,
    GroupAuthorizationFailedError,
    GroupIdNotFoundError,
    GroupKindMismatchError,
    InternalTopicReadOnlyError,
    InvalidCommitOffsetSizeError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidProducerNameError,
    InvalidQueueDelayError,
    InvalidRequestError,
    InvalidRequiredAcksError,
    InvalidSessionTimeoutError,
    InvalidTopicError,
    LogstreamError,
    OffsetOutOfRangeError,
    QueueOffsetNotInWindowError,
    QueueRecordNotHeldError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from logstream.protocol import admin_pb2, group_pb2, log_pb2, queue_pb2, security_pb2

S = grpc.StatusCode
ADMIN, MALLORY, NOBODY, FORGED = "admin", "mallory", "", "forged"
LONG_NAME = "t" * 242  # one past the longest topic name
HUGE_NAME = "n" * 100_000
I32_MAX, I64_MAX = 2**31 - 1, 2**63 - 1


def pb(message: Message) -> bytes:
    return message.SerializeToString()


def produce(topic: str = SEED_TOPIC, partition: int = 0, *batches: bytes, **kw: Any) -> bytes:
    data = log_pb2.PartitionProduceData(
        topic=topic, partition=partition, batches=batches or [encode_batch([b"x"])]
    )
    return pb(log_pb2.ProduceRequest(partitions=[data], **kw))


def fetch(topic: str = SEED_TOPIC, partition: int = 0, offset: int = 0, **kw: Any) -> bytes:
    part = log_pb2.FetchPartition(topic=topic, partition=partition, offset=offset)
    return pb(log_pb2.FetchRequest(partitions=[part], max_wait_ms=0, **kw))


def subscribe(topic: str = SEED_TOPIC, partition: int = 0, offset: int = 0, **kw: Any) -> bytes:
    part = log_pb2.FetchPartition(topic=topic, partition=partition, offset=offset)
    return pb(log_pb2.SubscribeRequest(partitions=[part], **kw))


def create_topic(name: str, partitions: int = 1, **config: str) -> bytes:
    spec = admin_pb2.TopicSpec(name=name, partitions=partitions, config=config)
    return pb(admin_pb2.CreateTopicsRequest(topics=[spec]))


def corrupt_batch() -> bytes:
    batch = bytearray(encode_batch([b"hello", b"world"]))
    batch[-3] ^= 0xFF
    return bytes(batch)


def settle(kind: int = queue_pb2.SETTLE_ACK, offsets: tuple[int, ...] = (0,), **kw: Any) -> Any:
    return queue_pb2.Settlement(topic=SEED_TOPIC, partition=0, kind=kind, offsets=offsets, **kw)


def acl(**fields: str) -> security_pb2.Acl:
    base = {
        "principal": "bob",
        "resource_type": "topic",
        "name": "x",
        "pattern": "literal",
        "operation": "read",
        "permission": "allow",
    }
    return security_pb2.Acl(**{**base, **fields})


Item = Callable[[tuple[Any, ...]], int]
"""Reads the per-item error code a row checks from the call's answers."""


def first_partition(answers: tuple[Any, ...]) -> int:
    return int(answers[0].partitions[0].error_code)


def first_batch(answers: tuple[Any, ...]) -> int:
    part = answers[0].partitions[0]
    return int(part.error_code or part.results[0].error_code)


def first_topic(answers: tuple[Any, ...]) -> int:
    return int(answers[0].topics[0].error_code)


def topic_result(answers: tuple[Any, ...]) -> int:
    return int(answers[0].result.error_code)


def top_level(answers: tuple[Any, ...]) -> int:
    return int(answers[0].error_code)


def first_offset(answers: tuple[Any, ...]) -> int:
    return int(answers[0].offsets[0].error_code)


def first_settled(answers: tuple[Any, ...]) -> int:
    return int(answers[0].results[0].error_codes[0])


@dataclass(frozen=True)
class Row:
    id: str
    method: str
    payload: bytes | list[bytes]
    status: grpc.StatusCode
    error: type[LogstreamError]
    item: Item | None = None  # None: the error is the call's (trailing metadata)
    token: str = ADMIN


GARBAGE = b"\xff" * 16
TRUNCATED = b"\x0a\xff\xff\xff\xff\x0f"
BAD_VARINT = b"\x08" + b"\xff" * 11
INVALID_UTF8 = b"\xc3\x28"
BAD = (S.INVALID_ARGUMENT, InvalidRequestError)
BAD_ACKS = (S.INVALID_ARGUMENT, InvalidRequiredAcksError)

# one row per case reads better than the formatter's one field per line
# fmt: off
ROWS: list[Row] = [
    # ---- Log.Produce -----------------------------------------------------------------------
    Row("produce-unknown-topic", "Log.Produce", produce("nosuch"), S.OK,
        UnknownTopicOrPartitionError, first_batch),
    Row("produce-negative-partition", "Log.Produce", produce(partition=-1), S.OK,
        UnknownTopicOrPartitionError, first_batch),
    Row("produce-huge-partition", "Log.Produce", produce(partition=I32_MAX), S.OK,
        UnknownTopicOrPartitionError, first_batch),
    Row("produce-empty-topic-name", "Log.Produce", produce(""), S.OK,
        UnknownTopicOrPartitionError, first_batch),
    Row("produce-huge-topic-name", "Log.Produce", produce(HUGE_NAME), S.OK,
        UnknownTopicOrPartitionError, first_batch),
    Row("produce-bad-acks-enum", "Log.Produce", produce(acks=99), *BAD_ACKS),
    Row("produce-negative-acks-enum", "Log.Produce", produce(acks=-5), *BAD_ACKS),
    Row("produce-corrupt-crc", "Log.Produce", produce(SEED_TOPIC, 0, corrupt_batch()), S.OK,
        CorruptRecordError, first_batch),
    Row("produce-truncated-batch", "Log.Produce",
        produce(SEED_TOPIC, 0, encode_batch([b"a", b"b"])[:40]), S.OK, CorruptRecordError,
        first_batch),
    Row("produce-empty-batch-bytes", "Log.Produce", produce(SEED_TOPIC, 0, b""), S.OK,
        CorruptRecordError, first_batch),
    Row("produce-internal-topic", "Log.Produce", produce("__consumer_offsets"), S.OK,
        InternalTopicReadOnlyError, first_batch),
    Row("produce-duplicate-acks-field", "Log.Produce", produce() + field_varint(1, 99),
        *BAD_ACKS),
    Row("produce-wire-type-mismatch", "Log.Produce",
        field_bytes(3, field_varint(1, 7)), S.OK, UnknownTopicOrPartitionError, first_batch),
    Row("produce-invalid-utf8-topic", "Log.Produce",
        field_bytes(3, field_bytes(1, INVALID_UTF8)), *BAD),
    Row("produce-20k-partition-entries", "Log.Produce",
        pb(log_pb2.ProduceRequest(partitions=[
            log_pb2.PartitionProduceData(topic="nosuch", partition=i) for i in range(20_000)])),
        S.OK, UnknownTopicOrPartitionError, first_batch),
    Row("produce-garbage", "Log.Produce", GARBAGE, *BAD),
    Row("produce-no-token", "Log.Produce", produce(), S.UNAUTHENTICATED,
        AuthenticationFailedError, token=NOBODY),
    Row("produce-forged-token", "Log.Produce", produce(), S.UNAUTHENTICATED,
        AuthenticationFailedError, token=FORGED),
    Row("produce-no-acl", "Log.Produce", produce(), S.PERMISSION_DENIED,
        TopicAuthorizationFailedError, token=MALLORY),
    # ---- Log.ProduceStream -----------------------------------------------------------------
    Row("stream-garbage-first", "Log.ProduceStream", [GARBAGE], *BAD),
    Row("stream-garbage-after-valid", "Log.ProduceStream", [produce(), TRUNCATED], *BAD),
    Row("stream-unknown-topic", "Log.ProduceStream", [produce("nosuch")], S.OK,
        UnknownTopicOrPartitionError, first_batch),
    Row("stream-corrupt-batch", "Log.ProduceStream",
        [produce(SEED_TOPIC, 1, corrupt_batch())], S.OK, CorruptRecordError, first_batch),
    Row("stream-internal-topic", "Log.ProduceStream", [produce("__consumer_offsets")],
        S.OK, InternalTopicReadOnlyError, first_batch),
    Row("stream-no-acl", "Log.ProduceStream", [produce()], S.PERMISSION_DENIED,
        TopicAuthorizationFailedError, token=MALLORY),
    # ---- Log.Fetch -------------------------------------------------------------------------
    Row("fetch-unknown-topic", "Log.Fetch", fetch("nosuch"), S.OK,
        UnknownTopicOrPartitionError, first_partition),
    Row("fetch-negative-offset", "Log.Fetch", fetch(offset=-1), S.OK, OffsetOutOfRangeError,
        first_partition),
    Row("fetch-huge-offset", "Log.Fetch", fetch(offset=I64_MAX), S.OK, OffsetOutOfRangeError,
        first_partition),
    Row("fetch-negative-partition", "Log.Fetch", fetch(partition=-3), S.OK,
        UnknownTopicOrPartitionError, first_partition),
    Row("fetch-negative-max-bytes", "Log.Fetch", fetch(max_bytes=-1), *BAD),
    Row("fetch-negative-partition-max-bytes", "Log.Fetch",
        pb(log_pb2.FetchRequest(partitions=[log_pb2.FetchPartition(
            topic=SEED_TOPIC, max_bytes=-100)])), S.OK, InvalidRequestError, first_partition),
    Row("fetch-negative-max-wait", "Log.Fetch",
        pb(log_pb2.FetchRequest(max_wait_ms=-1, partitions=[log_pb2.FetchPartition(
            topic=SEED_TOPIC)])), *BAD),
    Row("fetch-duplicate-max-bytes-field", "Log.Fetch",
        fetch() + field_varint(3, 2**64 - 1), *BAD),
    Row("fetch-20k-partitions", "Log.Fetch",
        pb(log_pb2.FetchRequest(partitions=[
            log_pb2.FetchPartition(topic="nosuch", partition=i) for i in range(20_000)])),
        S.OK, UnknownTopicOrPartitionError, first_partition),
    Row("fetch-no-acl", "Log.Fetch", fetch(), S.PERMISSION_DENIED,
        TopicAuthorizationFailedError, token=MALLORY),
    Row("fetch-garbage", "Log.Fetch", BAD_VARINT, *BAD),
    # ---- Log.Subscribe ---------------------------------------------------------------------
    Row("subscribe-unknown-topic", "Log.Subscribe", subscribe("nosuch"), S.OK,
        UnknownTopicOrPartitionError, first_partition),
    Row("subscribe-negative-offset", "Log.Subscribe", subscribe(offset=-9), S.OK,
        OffsetOutOfRangeError, first_partition),
    Row("subscribe-negative-heartbeat", "Log.Subscribe", subscribe(heartbeat_ms=-1), *BAD),
    Row("subscribe-negative-max-bytes", "Log.Subscribe", subscribe(max_bytes=-1), *BAD),
    Row("subscribe-no-partitions", "Log.Subscribe", pb(log_pb2.SubscribeRequest()), *BAD),
    Row("subscribe-no-acl", "Log.Subscribe", subscribe(), S.PERMISSION_DENIED,
        TopicAuthorizationFailedError, token=MALLORY),
    Row("subscribe-garbage", "Log.Subscribe", TRUNCATED, *BAD),
    # ---- Log.ListOffsets / InitProducerId --------------------------------------------------
    Row("list-offsets-unknown-topic", "Log.ListOffsets",
        pb(log_pb2.ListOffsetsRequest(partitions=[log_pb2.ListOffsetsPartition(topic="nosuch")])),
        S.OK, UnknownTopicOrPartitionError, first_partition),
    Row("list-offsets-bad-timestamp", "Log.ListOffsets",
        pb(log_pb2.ListOffsetsRequest(partitions=[log_pb2.ListOffsetsPartition(
            topic=SEED_TOPIC, timestamp=-7)])), S.OK, InvalidRequestError, first_partition),
    Row("list-offsets-huge-partition", "Log.ListOffsets",
        pb(log_pb2.ListOffsetsRequest(partitions=[log_pb2.ListOffsetsPartition(
            topic=SEED_TOPIC, partition=I32_MAX)])), S.OK, UnknownTopicOrPartitionError,
        first_partition),
    Row("init-producer-long-name", "Log.InitProducerId",
        pb(log_pb2.InitProducerIdRequest(producer_name="p" * 256)),
        S.INVALID_ARGUMENT, InvalidProducerNameError),
    Row("init-producer-invalid-utf8", "Log.InitProducerId", field_bytes(1, INVALID_UTF8), *BAD),
    # ---- Admin -----------------------------------------------------------------------------
    Row("create-topic-empty-name", "Admin.CreateTopics", create_topic(""), S.OK,
        InvalidTopicError, first_topic),
    Row("create-topic-slash", "Admin.CreateTopics", create_topic("a/b"), S.OK,
        InvalidTopicError, first_topic),
    Row("create-topic-dotdot", "Admin.CreateTopics", create_topic(".."), S.OK,
        InvalidTopicError, first_topic),
    Row("create-topic-too-long", "Admin.CreateTopics", create_topic(LONG_NAME), S.OK,
        InvalidTopicError, first_topic),
    Row("create-topic-internal", "Admin.CreateTopics", create_topic("__mine"), S.OK,
        InternalTopicReadOnlyError, first_topic),
    Row("create-topic-name-as-varint", "Admin.CreateTopics",
        field_bytes(1, field_varint(1, 5)), S.OK, InvalidTopicError, first_topic),
    Row("create-topic-negative-partitions", "Admin.CreateTopics", create_topic("cn", -4),
        S.OK, InvalidPartitionsError, first_topic),
    Row("create-topic-huge-partitions", "Admin.CreateTopics", create_topic("ch", I32_MAX),
        S.OK, InvalidPartitionsError, first_topic),
    Row("create-topic-unknown-config", "Admin.CreateTopics",
        create_topic("cu", bogus_key="1"), S.OK, InvalidConfigError, first_topic),
    Row("create-topic-config-not-a-number", "Admin.CreateTopics",
        create_topic("cv", retention_ms="soon"), S.OK, InvalidConfigError, first_topic),
    Row("create-topic-exists", "Admin.CreateTopics", create_topic(SEED_TOPIC, 2), S.OK,
        TopicAlreadyExistsError, first_topic),
    Row("create-topic-no-acl", "Admin.CreateTopics", create_topic("mine"), S.PERMISSION_DENIED,
        TopicAuthorizationFailedError, token=MALLORY),
    Row("delete-topic-unknown", "Admin.DeleteTopics",
        pb(admin_pb2.DeleteTopicsRequest(names=["nosuch"])), S.OK,
        UnknownTopicOrPartitionError, first_topic),
    Row("delete-topic-internal", "Admin.DeleteTopics",
        pb(admin_pb2.DeleteTopicsRequest(names=["__consumer_offsets"])), S.OK,
        InternalTopicReadOnlyError, first_topic),
    Row("delete-topic-no-acl", "Admin.DeleteTopics",
        pb(admin_pb2.DeleteTopicsRequest(names=[SEED_TOPIC])), S.PERMISSION_DENIED,
        TopicAuthorizationFailedError, token=MALLORY),
    Row("list-topics-garbage", "Admin.ListTopics", GARBAGE, *BAD),
    Row("describe-20k-names", "Admin.DescribeTopics",
        pb(admin_pb2.DescribeTopicsRequest(names=[f"nosuch-{i}" for i in range(20_000)])),
        S.OK, UnknownTopicOrPartitionError, first_topic),
    Row("describe-topic-unknown", "Admin.DescribeTopics",
        pb(admin_pb2.DescribeTopicsRequest(names=["nosuch"])), S.OK,
        UnknownTopicOrPartitionError, first_topic),
    Row("alter-config-unknown-topic", "Admin.AlterTopicConfig",
        pb(admin_pb2.AlterTopicConfigRequest(name="nosuch", set={"retention_ms": "1"})), S.OK,
        UnknownTopicOrPartitionError, topic_result),
    Row("alter-config-bad-key", "Admin.AlterTopicConfig",
        pb(admin_pb2.AlterTopicConfigRequest(name=SEED_TOPIC, set={"nope": "1"})), S.OK,
        InvalidConfigError, topic_result),
    Row("alter-config-negative-segment", "Admin.AlterTopicConfig",
        pb(admin_pb2.AlterTopicConfigRequest(name=SEED_TOPIC, set={"segment_bytes": "-1"})),
        S.OK, InvalidConfigError, topic_result),
    Row("alter-config-internal", "Admin.AlterTopicConfig",
        pb(admin_pb2.AlterTopicConfigRequest(name="__consumer_offsets",
                                             set={"retention_ms": "1"})),
        S.OK, InternalTopicReadOnlyError, topic_result),
    Row("create-partitions-shrink", "Admin.CreatePartitions",
        pb(admin_pb2.CreatePartitionsRequest(name=SEED_TOPIC, total_count=1)), S.OK,
        InvalidPartitionsError, topic_result),
    Row("create-partitions-huge", "Admin.CreatePartitions",
        pb(admin_pb2.CreatePartitionsRequest(name=SEED_TOPIC, total_count=I32_MAX)), S.OK,
        InvalidPartitionsError, topic_result),
    Row("create-partitions-unknown", "Admin.CreatePartitions",
        pb(admin_pb2.CreatePartitionsRequest(name="nosuch", total_count=3)), S.OK,
        UnknownTopicOrPartitionError, topic_result),
    # ---- Group -----------------------------------------------------------------------------
    Row("heartbeat-empty-group", "Group.Heartbeat",
        pb(group_pb2.HeartbeatRequest(group_id="", topics=[SEED_TOPIC])),
        *BAD),
    Row("heartbeat-bogus-member", "Group.Heartbeat",
        pb(group_pb2.HeartbeatRequest(group_id=SEED_GROUP, member_id="bogus", member_epoch=5)),
        S.NOT_FOUND, UnknownMemberIdError),
    Row("heartbeat-tiny-session-timeout", "Group.Heartbeat",
        pb(group_pb2.HeartbeatRequest(group_id="g-tiny", topics=[SEED_TOPIC],
                                      session_timeout_ms=1)),
        S.INVALID_ARGUMENT, InvalidSessionTimeoutError),
    Row("heartbeat-unknown-assignor", "Group.Heartbeat",
        pb(group_pb2.HeartbeatRequest(group_id="g-asg", topics=[SEED_TOPIC],
                                      assignor="zzz")),
        *BAD),
    Row("heartbeat-queue-group", "Group.Heartbeat",
        pb(group_pb2.HeartbeatRequest(group_id=SEED_QUEUE, topics=[SEED_TOPIC])),
        S.FAILED_PRECONDITION, GroupKindMismatchError),
    Row("heartbeat-no-acl", "Group.Heartbeat",
        pb(group_pb2.HeartbeatRequest(group_id=SEED_GROUP)), S.PERMISSION_DENIED,
        GroupAuthorizationFailedError, token=MALLORY),
    Row("commit-negative-offset", "Group.CommitOffsets",
        pb(group_pb2.CommitOffsetsRequest(group_id="g-neg", member_epoch=-1, offsets=[
            group_pb2.OffsetCommit(topic=SEED_TOPIC, partition=0, offset=-5)])),
        S.OK, OffsetOutOfRangeError, lambda a: a[0].partitions[0].error_code),
    Row("commit-unknown-topic", "Group.CommitOffsets",
        pb(group_pb2.CommitOffsetsRequest(group_id="g-unk", member_epoch=-1, offsets=[
            group_pb2.OffsetCommit(topic="nosuch", partition=0, offset=1)])),
        S.OK, UnknownTopicOrPartitionError, lambda a: a[0].partitions[0].error_code),
    Row("commit-bogus-member", "Group.CommitOffsets",
        pb(group_pb2.CommitOffsetsRequest(group_id=SEED_GROUP, member_id="bogus",
                                          member_epoch=3, offsets=[
            group_pb2.OffsetCommit(topic=SEED_TOPIC, partition=0, offset=1)])),
        S.NOT_FOUND, UnknownMemberIdError),
    Row("commit-huge-metadata", "Group.CommitOffsets",
        pb(group_pb2.CommitOffsetsRequest(group_id="g-meta", member_epoch=-1, offsets=[
            group_pb2.OffsetCommit(topic=SEED_TOPIC, partition=0, offset=1,
                                   metadata="m" * 100_000)])),
        S.OK, InvalidCommitOffsetSizeError, lambda a: a[0].partitions[0].error_code),
    Row("fetch-offsets-empty-group", "Group.FetchOffsets",
        pb(group_pb2.FetchOffsetsRequest(group_id="")), *BAD),
    Row("list-groups-garbage", "Group.ListGroups", BAD_VARINT, *BAD),
    Row("describe-group-unknown", "Group.DescribeGroup",
        pb(group_pb2.DescribeGroupRequest(group_id="nosuch-g")), S.NOT_FOUND,
        GroupIdNotFoundError),
    Row("delete-group-unknown", "Group.DeleteGroup",
        pb(group_pb2.DeleteGroupRequest(group_id="nosuch-g")), S.NOT_FOUND,
        GroupIdNotFoundError),
    Row("reset-offsets-no-target", "Group.ResetOffsets",
        pb(group_pb2.ResetOffsetsRequest(group_id=SEED_GROUP, topic=SEED_TOPIC)), *BAD),
    Row("reset-offsets-unknown-topic", "Group.ResetOffsets",
        pb(group_pb2.ResetOffsetsRequest(group_id=SEED_GROUP, topic="nosuch",
                                         to_earliest=True)),
        S.NOT_FOUND, UnknownTopicOrPartitionError),
    Row("reset-offsets-bad-partition", "Group.ResetOffsets",
        pb(group_pb2.ResetOffsetsRequest(group_id=SEED_GROUP, topic=SEED_TOPIC,
                                         partitions=[9], to_earliest=True)),
        S.NOT_FOUND, UnknownTopicOrPartitionError),
    # ---- Queue -----------------------------------------------------------------------------
    Row("queue-join-unknown-group", "Queue.Join",
        pb(queue_pb2.QueueJoinRequest(group="nosuch-q", member_id="m1")), S.NOT_FOUND,
        GroupIdNotFoundError),
    Row("queue-join-empty-member", "Queue.Join",
        pb(queue_pb2.QueueJoinRequest(group=SEED_QUEUE, member_id="")), *BAD),
    Row("queue-join-consumer-group", "Queue.Join",
        pb(queue_pb2.QueueJoinRequest(group=SEED_GROUP, member_id="m1")),
        S.FAILED_PRECONDITION, GroupKindMismatchError),
    Row("queue-join-no-acl", "Queue.Join",
        pb(queue_pb2.QueueJoinRequest(group=SEED_QUEUE, member_id="m1")),
        S.PERMISSION_DENIED, GroupAuthorizationFailedError, token=MALLORY),
    Row("queue-leave-unknown-group", "Queue.Leave",
        pb(queue_pb2.QueueLeaveRequest(group="nosuch-q", member_id="ghost")), S.NOT_FOUND,
        GroupIdNotFoundError),
    Row("queue-fetch-empty-member", "Queue.Fetch",
        pb(queue_pb2.QueueFetchRequest(group=SEED_QUEUE, max_records=1)), *BAD),
    Row("queue-fetch-negative-max", "Queue.Fetch",
        pb(queue_pb2.QueueFetchRequest(group=SEED_QUEUE, member_id="ghost", max_records=-1)),
        *BAD),
    Row("session-garbage-first", "Queue.Session", [GARBAGE], *BAD),
    Row("session-empty-member", "Queue.Session",
        [pb(queue_pb2.QueueSessionRequest(group=SEED_QUEUE, credit=1))], *BAD),
    Row("session-negative-credit", "Queue.Session",
        [pb(queue_pb2.QueueSessionRequest(group=SEED_QUEUE, member_id="ghost", credit=-1))],
        *BAD),
    Row("session-member-changes", "Queue.Session",
        [pb(queue_pb2.QueueSessionRequest(group=SEED_QUEUE, member_id="ghost")),
         pb(queue_pb2.QueueSessionRequest(group=SEED_QUEUE, member_id="other"))], *BAD),
    Row("session-unknown-group", "Queue.Session",
        [pb(queue_pb2.QueueSessionRequest(group="nosuch-q", member_id="ghost"))],
        S.NOT_FOUND, GroupIdNotFoundError),
    Row("session-no-acl", "Queue.Session",
        [pb(queue_pb2.QueueSessionRequest(group=SEED_QUEUE, member_id="m1"))],
        S.PERMISSION_DENIED, GroupAuthorizationFailedError, token=MALLORY),
    Row("queue-settle-not-held", "Queue.Settle",
        pb(queue_pb2.QueueSettleRequest(group=SEED_QUEUE, member_id="ghost",
                                        settle=[settle(offsets=(5,))])),
        S.OK, QueueRecordNotHeldError, first_settled),
    Row("queue-settle-far-offset", "Queue.Settle",
        pb(queue_pb2.QueueSettleRequest(group=SEED_QUEUE, member_id="ghost",
                                        settle=[settle(offsets=(I64_MAX,))])),
        S.OK, QueueOffsetNotInWindowError, first_settled),
    Row("queue-settle-bad-kind", "Queue.Settle",
        pb(queue_pb2.QueueSettleRequest(group=SEED_QUEUE, member_id="ghost",
                                        settle=[settle(kind=9)])), *BAD),
    Row("queue-settle-negative-delay", "Queue.Settle",
        pb(queue_pb2.QueueSettleRequest(group=SEED_QUEUE, member_id="ghost",
                                        settle=[settle(kind=queue_pb2.SETTLE_NACK,
                                                       delay_ms=-5)])),
        S.INVALID_ARGUMENT, InvalidQueueDelayError),
    Row("queue-create-negative-lease", "Queue.CreateQueueGroup",
        pb(queue_pb2.CreateQueueGroupRequest(group="q-neg", topics=[SEED_TOPIC],
                                             settings=queue_pb2.QueueSettings(lease_ms=-1))),
        S.INVALID_ARGUMENT, InvalidConfigError),
    Row("queue-create-zero-window", "Queue.CreateQueueGroup",
        pb(queue_pb2.CreateQueueGroupRequest(group="q-win", topics=[SEED_TOPIC],
                                             settings=queue_pb2.QueueSettings(window_size=0))),
        S.INVALID_ARGUMENT, InvalidConfigError),
    Row("queue-create-bad-expired-action", "Queue.CreateQueueGroup",
        pb(queue_pb2.CreateQueueGroupRequest(
            group="q-exp", topics=[SEED_TOPIC],
            settings=queue_pb2.QueueSettings(expired_action="explode"))),
        S.INVALID_ARGUMENT, InvalidConfigError),
    Row("queue-create-huge-window", "Queue.CreateQueueGroup",
        pb(queue_pb2.CreateQueueGroupRequest(group="q-big", topics=[SEED_TOPIC],
                                             settings=queue_pb2.QueueSettings(
                                                 window_size=I32_MAX))),
        S.INVALID_ARGUMENT, InvalidConfigError),
    Row("queue-alter-huge-lease", "Queue.AlterQueueGroup",
        pb(queue_pb2.AlterQueueGroupRequest(group=SEED_QUEUE, settings=queue_pb2.QueueSettings(
            lease_ms=I64_MAX))),
        S.INVALID_ARGUMENT, InvalidConfigError),
    Row("queue-alter-huge-backoff", "Queue.AlterQueueGroup",
        pb(queue_pb2.AlterQueueGroupRequest(group=SEED_QUEUE, settings=queue_pb2.QueueSettings(
            backoff_initial_ms=I64_MAX, backoff_max_ms=I64_MAX))),
        S.INVALID_ARGUMENT, InvalidConfigError),
    Row("queue-fetch-huge-lease", "Queue.Fetch",
        pb(queue_pb2.QueueFetchRequest(group=SEED_QUEUE, member_id="ghost", max_records=1,
                                       lease_ms=I64_MAX)),
        S.INVALID_ARGUMENT, InvalidQueueDelayError),
    Row("queue-settle-huge-delay", "Queue.Settle",
        pb(queue_pb2.QueueSettleRequest(group=SEED_QUEUE, member_id="ghost",
                                        settle=[settle(kind=queue_pb2.SETTLE_NACK,
                                                       delay_ms=I64_MAX)])),
        S.INVALID_ARGUMENT, InvalidQueueDelayError),
    Row("queue-settle-huge-extend", "Queue.Settle",
        pb(queue_pb2.QueueSettleRequest(group=SEED_QUEUE, member_id="ghost",
                                        settle=[settle(kind=queue_pb2.SETTLE_EXTEND,
                                                       lease_ms=I64_MAX)])),
        S.INVALID_ARGUMENT, InvalidQueueDelayError),
    Row("queue-create-unknown-topic", "Queue.CreateQueueGroup",
        pb(queue_pb2.CreateQueueGroupRequest(group="q-unk", topics=["nosuch"])), S.NOT_FOUND,
        UnknownTopicOrPartitionError),
    Row("queue-create-over-consumer-group", "Queue.CreateQueueGroup",
        pb(queue_pb2.CreateQueueGroupRequest(group=SEED_GROUP, topics=[SEED_TOPIC])),
        S.FAILED_PRECONDITION, GroupKindMismatchError),
    Row("queue-alter-unknown", "Queue.AlterQueueGroup",
        pb(queue_pb2.AlterQueueGroupRequest(group="nosuch-q")), S.NOT_FOUND,
        GroupIdNotFoundError),
    Row("queue-describe-unknown", "Queue.DescribeQueueGroup",
        pb(queue_pb2.DescribeQueueGroupRequest(group="nosuch-q")), S.NOT_FOUND,
        GroupIdNotFoundError),
    Row("queue-list-garbage", "Queue.ListQueueGroups", GARBAGE, *BAD),
    Row("queue-delete-unknown", "Queue.DeleteQueueGroup",
        pb(queue_pb2.DeleteQueueGroupRequest(group="nosuch-q")), S.NOT_FOUND,
        GroupIdNotFoundError),
    Row("queue-peek-unknown", "Queue.Peek", pb(queue_pb2.PeekRequest(group="nosuch-q")),
        S.NOT_FOUND, GroupIdNotFoundError),
    Row("queue-peek-negative-max", "Queue.Peek",
        pb(queue_pb2.PeekRequest(group=SEED_QUEUE, max_records=-1)), *BAD),
    Row("queue-redrive-unknown", "Queue.Redrive", pb(queue_pb2.RedriveRequest(group="nosuch-q")),
        S.NOT_FOUND, GroupIdNotFoundError),
    Row("queue-redrive-to-internal", "Queue.Redrive",
        pb(queue_pb2.RedriveRequest(group=SEED_QUEUE, to_topic="__consumer_offsets",
                                    execute=True)),
        S.PERMISSION_DENIED, InternalTopicReadOnlyError),
    # ---- Security --------------------------------------------------------------------------
    Row("acl-bad-resource-type", "Security.CreateAcls",
        pb(security_pb2.CreateAclsRequest(acls=[acl(resource_type="planet")])), *BAD),
    Row("acl-bad-operation", "Security.CreateAcls",
        pb(security_pb2.CreateAclsRequest(acls=[acl(operation="launch")])), *BAD),
    Row("acl-bad-permission", "Security.CreateAcls",
        pb(security_pb2.CreateAclsRequest(acls=[acl(permission="maybe")])), *BAD),
    Row("acl-empty-principal", "Security.CreateAcls",
        pb(security_pb2.CreateAclsRequest(acls=[acl(principal="")])), *BAD),
    Row("acl-bad-pattern", "Security.CreateAcls",
        pb(security_pb2.CreateAclsRequest(acls=[acl(pattern="regex")])), *BAD),
    Row("acl-create-no-acl", "Security.CreateAcls",
        pb(security_pb2.CreateAclsRequest(acls=[acl(principal="mallory")])),
        S.PERMISSION_DENIED, ClusterAuthorizationFailedError, token=MALLORY),
    Row("acl-list-no-acl", "Security.ListAcls", pb(security_pb2.ListAclsRequest()),
        S.PERMISSION_DENIED, ClusterAuthorizationFailedError, token=MALLORY),
    Row("acl-delete-garbage", "Security.DeleteAcls", TRUNCATED, *BAD),
    Row("user-empty-name", "Security.CreateUser", pb(security_pb2.CreateUserRequest(name="")),
        *BAD),
    Row("user-bad-name", "Security.CreateUser",
        pb(security_pb2.CreateUserRequest(name="a b/c")), *BAD),
    Row("user-huge-name", "Security.CreateUser",
        pb(security_pb2.CreateUserRequest(name=HUGE_NAME)), *BAD),
    Row("user-delete-unknown", "Security.DeleteUser",
        pb(security_pb2.DeleteUserRequest(name="nobody-here")), *BAD),
    Row("quota-set-empty-principal", "Security.SetQuota",
        pb(security_pb2.SetQuotaRequest(principal="", requests_per_s=1)), *BAD),
    Row("quota-set-negative", "Security.SetQuota",
        pb(security_pb2.SetQuotaRequest(principal="bob", produce_bytes_per_s=-1)), *BAD),
    Row("quota-set-nan", "Security.SetQuota",
        pb(security_pb2.SetQuotaRequest(principal="bob", fetch_bytes_per_s=float("nan"))),
        *BAD),
    Row("quota-set-infinite", "Security.SetQuota",
        pb(security_pb2.SetQuotaRequest(principal="bob", requests_per_s=float("inf"))), *BAD),
    Row("quota-set-huge-principal", "Security.SetQuota",
        pb(security_pb2.SetQuotaRequest(principal=HUGE_NAME, requests_per_s=1)), *BAD),
    Row("quota-set-no-acl", "Security.SetQuota",
        pb(security_pb2.SetQuotaRequest(principal="mallory", requests_per_s=0)),
        S.PERMISSION_DENIED, ClusterAuthorizationFailedError, token=MALLORY),
    Row("quota-list-no-acl", "Security.ListQuotas", pb(security_pb2.ListQuotasRequest()),
        S.PERMISSION_DENIED, ClusterAuthorizationFailedError, token=MALLORY),
    Row("quota-list-garbage", "Security.ListQuotas", BAD_VARINT, *BAD),
    Row("user-list-no-acl", "Security.ListUsers", pb(security_pb2.ListUsersRequest()),
        S.PERMISSION_DENIED, ClusterAuthorizationFailedError, token=MALLORY),
]
# fmt: on


def _token(target: Target, who: str) -> str | None:
    return {
        ADMIN: target.admin,
        MALLORY: target.mallory,
        NOBODY: None,
        FORGED: "ls1.admin.not-the-secret",
    }[who]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_row(target: Target, row: Row) -> None:
    outcome = call(
        target.channel, row.method, row.payload, token=_token(target, row.token), timeout=15
    )
    if os.environ.get("LOGSTREAM_CATALOGUE_SHOW"):
        item = None
        if outcome.answers and row.item is not None:
            try:
                item = row.item(outcome.answers)
            except Exception as exc:  # shown, then the asserts below fail
                item = repr(exc)
        print(
            f"\nROW {row.id}: {outcome.status.name} code={outcome.code} item={item} "
            f"details={outcome.details[:160]!r}"
        )
    assert outcome.status == row.status, outcome
    if row.item is None:
        assert outcome.code == row.error.code, outcome
    else:
        assert outcome.code is None, outcome
        assert row.item(outcome.answers) == row.error.code, outcome


def test_catalogue_covers_every_method() -> None:
    covered = {r.method for r in ROWS}
    assert sorted(set(METHODS) - covered) == []
    assert len(ROWS) >= 60


def test_still_serving_after_the_catalogue(target: Target) -> None:
    assert_serving(target)
