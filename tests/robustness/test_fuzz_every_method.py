"""A seeded random-bytes fuzz of every method of every service, against a real broker.

For each method: ``PER_METHOD`` payloads: a quarter pure random bytes, a quarter a valid
request of that method (a template below) with a few random byte mutations (flip, insert,
delete, truncate, duplicate a slice, splice random bytes), and half the template with some
fields set to extreme values (integer limits, empty / long / internal / path-like names,
random or damaged batches) and repeated fields cleared, duplicated or inflated.

Each answer must be either a success or a named error: a gRPC status carrying a
``logstream-error-code`` other than UNKNOWN_SERVER_ERROR, and, in a successful answer, no
per-item error code of -1. The broker must never answer UNKNOWN or INTERNAL, never log a
traceback or an unexpected failure, stay responsive after each method's round, and
(``robustness_target``) serve a normal produce + fetch with its seed data intact and a data
dir that verifies at the end.

Deadline or cancellation on the client side is allowed (a mutated request may be a valid
long poll or subscription). Bounded: ``PER_METHOD`` x 38 methods, 16 calls in flight.
The seed is printed with every failure; ``LOGSTREAM_FUZZ_SEED`` replays one.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from robustness_target import SEED_QUEUE, Target
from robustness_wire import METHODS, Outcome, call

from logstream.codec import encode_batch
from logstream.errors import UnknownServerError
from logstream.protocol import (
    admin_pb2,
    common_pb2,
    group_pb2,
    log_pb2,
    queue_pb2,
    security_pb2,
)

SEED = int(os.environ.get("LOGSTREAM_FUZZ_SEED", "20261206"))
PER_METHOD = 200
IN_FLIGHT = 16
TOPIC = "fz"  # the fuzz writes and alters only this topic, never the seed data
UNARY_TIMEOUT_S = 2.0
STREAM_TIMEOUT_S = 0.3
ALLOWED_WITHOUT_CODE = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}

TEMPLATES: dict[str, Message] = {
    "Log.Produce": log_pb2.ProduceRequest(
        acks=common_pb2.ACKS_LEADER,
        partitions=[
            log_pb2.PartitionProduceData(
                topic=TOPIC, partition=0, batches=[encode_batch([b"k", b"v" * 30])]
            )
        ],
    ),
    "Log.ProduceStream": log_pb2.ProduceRequest(
        partitions=[
            log_pb2.PartitionProduceData(topic=TOPIC, partition=1, batches=[encode_batch([b"s"])])
        ],
        correlation_id=7,
    ),
    "Log.Fetch": log_pb2.FetchRequest(
        partitions=[log_pb2.FetchPartition(topic=TOPIC, partition=0, offset=0, max_bytes=4096)]
    ),
    "Log.Subscribe": log_pb2.SubscribeRequest(
        partitions=[log_pb2.FetchPartition(topic=TOPIC, partition=1)], heartbeat_ms=100
    ),
    "Log.ListOffsets": log_pb2.ListOffsetsRequest(
        partitions=[log_pb2.ListOffsetsPartition(topic=TOPIC, partition=0, timestamp=-1)]
    ),
    "Log.InitProducerId": log_pb2.InitProducerIdRequest(producer_name="fz-producer"),
    "Admin.CreateTopics": admin_pb2.CreateTopicsRequest(
        topics=[admin_pb2.TopicSpec(name="fz-new", partitions=2, config={"retention_ms": "9"})]
    ),
    "Admin.DeleteTopics": admin_pb2.DeleteTopicsRequest(names=["fz-gone"]),
    "Admin.ListTopics": admin_pb2.ListTopicsRequest(include_internal=True),
    "Admin.DescribeTopics": admin_pb2.DescribeTopicsRequest(names=[TOPIC]),
    "Admin.AlterTopicConfig": admin_pb2.AlterTopicConfigRequest(
        name=TOPIC, set={"segment_bytes": "1048576"}, reset=["retention_ms"]
    ),
    "Admin.CreatePartitions": admin_pb2.CreatePartitionsRequest(name=TOPIC, total_count=3),
    "Group.Heartbeat": group_pb2.HeartbeatRequest(
        group_id="fz-g", topics=[TOPIC], session_timeout_ms=10_000, member_epoch=0
    ),
    "Group.CommitOffsets": group_pb2.CommitOffsetsRequest(
        group_id="fz-g2",
        member_epoch=-1,
        offsets=[group_pb2.OffsetCommit(topic=TOPIC, partition=0, offset=1, metadata="m")],
    ),
    "Group.FetchOffsets": group_pb2.FetchOffsetsRequest(
        group_id="fz-g2", partitions=[common_pb2.TopicPartition(topic=TOPIC, partition=0)]
    ),
    "Group.ListGroups": group_pb2.ListGroupsRequest(),
    "Group.DescribeGroup": group_pb2.DescribeGroupRequest(group_id="fz-g2"),
    "Group.DeleteGroup": group_pb2.DeleteGroupRequest(group_id="fz-g3"),
    "Group.ResetOffsets": group_pb2.ResetOffsetsRequest(
        group_id="fz-g2", topic=TOPIC, partitions=[0], to_offset=0, execute=True
    ),
    "Queue.Join": queue_pb2.QueueJoinRequest(
        group="fz-q", member_id="fz-m", topics=[TOPIC], create=True
    ),
    "Queue.Leave": queue_pb2.QueueLeaveRequest(group="fz-q", member_id="fz-m"),
    "Queue.Fetch": queue_pb2.QueueFetchRequest(
        group="fz-q", member_id="fz-m", max_records=5, lease_ms=1000
    ),
    "Queue.Session": queue_pb2.QueueSessionRequest(
        group="fz-q", member_id="fz-m-push", credit=5, lease_ms=1000, flush=True
    ),
    "Queue.Settle": queue_pb2.QueueSettleRequest(
        group="fz-q",
        member_id="fz-m",
        settle=[
            queue_pb2.Settlement(
                topic=TOPIC, partition=0, kind=queue_pb2.SETTLE_NACK, offsets=[0, 1], delay_ms=5
            )
        ],
    ),
    "Queue.CreateQueueGroup": queue_pb2.CreateQueueGroupRequest(
        group="fz-q2",
        topics=[TOPIC],
        settings=queue_pb2.QueueSettings(lease_ms=1000, max_deliveries=3, window_size=64),
    ),
    "Queue.AlterQueueGroup": queue_pb2.AlterQueueGroupRequest(
        group="fz-q", settings=queue_pb2.QueueSettings(lease_ms=2000, backoff_max_ms=100)
    ),
    "Queue.DescribeQueueGroup": queue_pb2.DescribeQueueGroupRequest(group="fz-q"),
    "Queue.ListQueueGroups": queue_pb2.ListQueueGroupsRequest(),
    "Queue.DeleteQueueGroup": queue_pb2.DeleteQueueGroupRequest(group="fz-q3", force=True),
    "Queue.Peek": queue_pb2.PeekRequest(group=SEED_QUEUE, max_records=3),
    "Queue.Redrive": queue_pb2.RedriveRequest(group="fz-q", execute=True, max_records=2),
    "Security.CreateAcls": security_pb2.CreateAclsRequest(
        acls=[
            security_pb2.Acl(
                principal="fz-user",
                resource_type="topic",
                name="fz",
                pattern="prefix",
                operation="read",
                permission="allow",
            )
        ]
    ),
    "Security.ListAcls": security_pb2.ListAclsRequest(filter=security_pb2.Acl(principal="fz")),
    "Security.DeleteAcls": security_pb2.DeleteAclsRequest(
        filter=security_pb2.Acl(principal="fz-user")
    ),
    "Security.CreateUser": security_pb2.CreateUserRequest(name="fz-user"),
    "Security.DeleteUser": security_pb2.DeleteUserRequest(name="fz-user"),
    "Security.ListUsers": security_pb2.ListUsersRequest(),
    "Security.SetQuota": security_pb2.SetQuotaRequest(
        principal="fz-user", produce_bytes_per_s=1e9, requests_per_s=1e6
    ),
    "Security.ListQuotas": security_pb2.ListQuotasRequest(principal="fz-user"),
}


def _slows_the_fuzzer(name: str, payload: bytes) -> bool:
    """A quota on the fuzzer's own principal (or everyone) would slow every later call."""
    if name != "Security.SetQuota":
        return False
    try:
        request = security_pb2.SetQuotaRequest.FromString(payload)
    except Exception:
        return False
    return request.principal in ("*", "admin")


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip bits of one byte
            buf[at % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert a byte
            buf.insert(at, rng.randrange(256))
        elif op == 2 and buf:  # delete a few bytes
            del buf[at : at + rng.randint(1, 4)]
        elif op == 3:  # truncate
            del buf[at:]
        elif op == 4 and buf:  # duplicate a slice (repeated / duplicated fields)
            lo = rng.randrange(len(buf))
            buf[at:at] = buf[lo : lo + rng.randint(1, 16)]
        elif op == 5:  # an extreme byte
            if buf:
                buf[at % len(buf)] = rng.choice((0x00, 0x7F, 0x80, 0xFF))
        else:  # splice random bytes
            buf[at:at] = rng.randbytes(rng.randint(1, 12))
    return bytes(buf)


INTS = (0, 1, -1, 2, 7, 1000, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), 2**32 - 1, 2**64 - 1)
STRINGS = ("", "x" * 300, "__consumer_offsets", "../../etc", "fz", "fz-q", "a/b", "\x00", "*")


def _int_for(fd: Any, rng: random.Random) -> int:
    value = rng.choice(INTS) if rng.random() < 0.8 else rng.randint(-(2**40), 2**40)
    bits = {fd.TYPE_INT32: 32, fd.TYPE_SINT32: 32, fd.TYPE_ENUM: 32, fd.TYPE_UINT32: 32}
    width = bits.get(fd.type, 64)
    unsigned = fd.type in (fd.TYPE_UINT32, fd.TYPE_UINT64)
    lo, hi = (0, 2**width - 1) if unsigned else (-(2 ** (width - 1)), 2 ** (width - 1) - 1)
    return min(max(value, lo), hi)


def _value_for(fd: Any, rng: random.Random) -> Any:
    if fd.type == fd.TYPE_STRING:
        return rng.choice(STRINGS)
    if fd.type == fd.TYPE_BYTES:
        batch = mutate(rng, encode_batch([b"v"]))
        return rng.choice((b"", rng.randbytes(rng.randint(1, 80)), batch))
    if fd.type == fd.TYPE_BOOL:
        return rng.random() < 0.5
    if fd.type in (fd.TYPE_DOUBLE, fd.TYPE_FLOAT):
        return rng.choice((0.0, -1.0, 1e300))
    return _int_for(fd, rng)


def mutate_fields(rng: random.Random, message: Message) -> None:
    """Set some fields (anywhere in ``message``) to extreme values, and clear, duplicate or
    inflate some repeated fields: a request that decodes but asks for absurd things."""
    for fd in message.DESCRIPTOR.fields:
        if rng.random() > 0.4:
            continue
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            getattr(message, fd.name)[rng.choice(STRINGS)] = rng.choice(STRINGS)
        elif fd.is_repeated:
            items = getattr(message, fd.name)
            action = rng.randrange(3)
            if action == 0:
                del items[:]
            elif fd.message_type is not None:
                for item in list(items):
                    mutate_fields(rng, item)
                if action == 2 and len(items):
                    for _ in range(rng.choice((1, 50))):
                        items.add().CopyFrom(items[0])
            else:
                items.extend(_value_for(fd, rng) for _ in range(rng.choice((1, 3, 100))))
        elif fd.message_type is not None:
            mutate_fields(rng, getattr(message, fd.name))
        else:
            setattr(message, fd.name, _value_for(fd, rng))


def payloads(rng: random.Random, name: str, count: int) -> list[bytes]:
    """A quarter random bytes, a quarter byte-mutated templates, half field-mutated ones."""
    template = TEMPLATES[name]
    out = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.25:
            out.append(rng.randbytes(rng.randint(0, 64)))
        elif roll < 0.5:
            out.append(mutate(rng, template.SerializeToString()))
        else:
            message = type(template)()
            message.CopyFrom(template)
            mutate_fields(rng, message)
            out.append(message.SerializeToString())
    return [template.SerializeToString() if _slows_the_fuzzer(name, p) else p for p in out]


def _item_codes(message: Message) -> list[int]:
    """Every ``error_code`` / ``error_codes`` value anywhere in ``message``."""
    codes: list[int] = []
    for fd, value in message.ListFields():
        if fd.name == "error_code":
            codes.append(int(value))
        elif fd.name == "error_codes":
            codes.extend(int(v) for v in value)
        elif fd.message_type is not None:
            if fd.is_repeated and not fd.message_type.GetOptions().map_entry:
                for item in value:
                    codes.extend(_item_codes(item))
            elif not fd.is_repeated:
                codes.extend(_item_codes(value))
    return codes


def problem(outcome: Outcome) -> str | None:
    """Why ``outcome`` is not a success or a named error (None when it is one)."""
    if outcome.status == grpc.StatusCode.OK:
        for answer in outcome.answers:
            if UnknownServerError.code in _item_codes(answer):
                return f"an item answered UNKNOWN_SERVER_ERROR: {answer}"[:500]
        return None
    if outcome.status in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
        return f"{outcome.status.name}: {outcome.details}"
    if outcome.code is None:
        if outcome.status in ALLOWED_WITHOUT_CODE:
            return None
        return f"{outcome.status.name} without an error code: {outcome.details}"
    if outcome.code == UnknownServerError.code:
        return f"UNKNOWN_SERVER_ERROR: {outcome.details}"
    return None


def _send(target: Target, name: str, payload: bytes, rng_value: int) -> Outcome:
    """One call; every eighth as ``mallory`` (no ACL), so the authorizer's checks see the
    mutated requests too."""
    method = METHODS[name]
    token = target.mallory if rng_value % 8 == 7 else target.admin
    if method.client_streaming:  # one to three messages on the stream
        extra = [payload] * (rng_value % 3)
        return call(target.channel, name, [payload, *extra], token=token, timeout=2.0)
    timeout = STREAM_TIMEOUT_S if method.server_streaming else UNARY_TIMEOUT_S
    return call(target.channel, name, payload, token=token, timeout=timeout, max_answers=2)


def _responsive(target: Target) -> None:
    outcome = call(
        target.channel,
        "Admin.ListTopics",
        admin_pb2.ListTopicsRequest().SerializeToString(),
        token=target.admin,
        timeout=10,
    )
    assert outcome.status == grpc.StatusCode.OK, outcome
    assert target.proc.proc is not None and target.proc.proc.poll() is None


@pytest.fixture(scope="module")
def fuzz_topic(target: Target) -> str:
    created = call(
        target.channel,
        "Admin.CreateTopics",
        admin_pb2.CreateTopicsRequest(
            topics=[admin_pb2.TopicSpec(name=TOPIC, partitions=2)]
        ).SerializeToString(),
        token=target.admin,
    )
    assert created.status == grpc.StatusCode.OK and created.answers[0].topics[0].error_code == 0
    # the queue group the Queue templates name, made before a Group call can take its name
    joined = call(
        target.channel,
        "Queue.Join",
        TEMPLATES["Queue.Join"].SerializeToString(),
        token=target.admin,
    )
    assert joined.status == grpc.StatusCode.OK, joined
    return TOPIC


def test_templates_cover_every_method() -> None:
    assert sorted(METHODS) == sorted(TEMPLATES)


def test_every_template_is_a_valid_request(target: Target, fuzz_topic: str) -> None:
    """The mutations start from requests the broker accepts (or names an error for)."""
    for name, template in TEMPLATES.items():
        outcome = _send(target, name, template.SerializeToString(), 0)
        assert problem(outcome) is None, (name, outcome)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_fuzz_method(target: Target, fuzz_topic: str, pool: ThreadPoolExecutor, name: str) -> None:
    rng = random.Random(f"{SEED}:{name}")
    batch = payloads(rng, name, PER_METHOD)
    values = [rng.randrange(1 << 30) for _ in batch]
    outcomes = list(pool.map(lambda a: _send(target, name, *a), zip(batch, values, strict=True)))
    bad = [
        (payload, why)
        for payload, outcome in zip(batch, outcomes, strict=True)
        if (why := problem(outcome)) is not None
    ]
    assert not bad, f"seed {SEED} ({name}): {len(bad)} bad answers, first: {bad[0]!r}"
    _responsive(target)
    out = target.proc.output()
    assert "failed unexpectedly" not in out, f"seed {SEED} ({name}): {out[-3000:]}"
    assert "Traceback" not in out, f"seed {SEED} ({name}): {out[-3000:]}"


@pytest.fixture(scope="module")
def pool() -> Any:
    started = time.monotonic()
    with ThreadPoolExecutor(IN_FLIGHT) as executor:
        yield executor
    print(f"fuzz of {len(TEMPLATES)} methods x {PER_METHOD}: {time.monotonic() - started:.1f} s")
