"""ACLs over every RPC: a matrix of principals x operations x resources.

For each RPC the test principal (``alice``) is tried with no rule, with a rule for another
operation, with exactly the rules the RPC needs (literal, then prefix, then for ``*``), and
with those rules plus a deny: only the allowed variants get through, every other one is
PERMISSION_DENIED with the resource's authorisation error, and no refused write lands and
no refused read returns data. Super users bypass the rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from logstream.broker.security.credentials import CredentialStore
from logstream.broker.security.rules import CHECKS
from logstream.client import AclBinding, Admin, Consumer, Producer
from logstream.codec import encode_batch, iter_batches
from logstream.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)
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
    security_pb2,
    security_pb2_grpc,
)
from logstream.protocol.status import error_from_rpc
from logstream.testing.broker import run_broker

TOPIC, GROUP = "orders", "billing"
QGROUP = "billing-jobs"
INBOX = "_inbox." + "0f" * 16  # a reply address nobody has open (the reply is dropped)


@dataclass
class Env:
    address: str
    tokens: dict[str, str]
    admin: Admin
    server: Any


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("acl-broker") / "data"
    store = CredentialStore(data)
    tokens = {name: store.add(name) for name in ("admin", "alice", "bob")}
    with run_broker(data, auth=True, acls=True, super_users="admin") as b:
        admin = Admin(b.address, token=tokens["admin"])
        admin.create_topic(TOPIC)
        producer = Producer(b.address, token=tokens["admin"])
        producer.send(TOPIC, value=b"first", partition=0).result(10)
        producer.close()
        yield Env(b.address, tokens, admin, b.server)
        admin.close()


class Stubs:
    def __init__(self, address: str, token: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.md = (("authorization", f"Bearer {token}"),)
        self.log = log_pb2_grpc.LogStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.group = group_pb2_grpc.GroupStub(self.channel)
        self.acl = security_pb2_grpc.SecurityStub(self.channel)
        self.queue = queue_pb2_grpc.QueueStub(self.channel)


def _produce_request() -> log_pb2.ProduceRequest:
    return log_pb2.ProduceRequest(
        acks=common_pb2.ACKS_LEADER,
        partitions=[
            log_pb2.PartitionProduceData(
                topic=TOPIC, partition=0, batches=[encode_batch([b"intruder"])]
            )
        ],
    )


def _fetch_partitions() -> list[log_pb2.FetchPartition]:
    return [log_pb2.FetchPartition(topic=TOPIC, partition=0, offset=0)]


def _subscribe(s: Stubs) -> Any:
    stream = s.log.Subscribe(
        log_pb2.SubscribeRequest(partitions=_fetch_partitions()), metadata=s.md, timeout=10
    )
    first = next(stream)
    stream.cancel()
    return first


def _produce_stream(s: Stubs) -> Any:
    answers = s.log.ProduceStream(iter([_produce_request()]), metadata=s.md, timeout=10)
    return next(answers)


Call = Callable[[Stubs], Any]
T, G, C = "topic", "group", "cluster"

# method -> (call, the (resource type, name, operation) rules it needs)
MATRIX: dict[str, tuple[Call, list[tuple[str, str, str]]]] = {
    "Log/Produce": (
        lambda s: s.log.Produce(_produce_request(), metadata=s.md, timeout=10),
        [(T, TOPIC, "write")],
    ),
    "Log/ProduceStream": (_produce_stream, [(T, TOPIC, "write")]),
    "Log/Fetch": (
        lambda s: s.log.Fetch(
            log_pb2.FetchRequest(partitions=_fetch_partitions()), metadata=s.md, timeout=10
        ),
        [(T, TOPIC, "read")],
    ),
    "Log/Subscribe": (_subscribe, [(T, TOPIC, "read")]),
    "Log/ListOffsets": (
        lambda s: s.log.ListOffsets(
            log_pb2.ListOffsetsRequest(
                partitions=[log_pb2.ListOffsetsPartition(topic=TOPIC, partition=0, timestamp=-1)]
            ),
            metadata=s.md,
            timeout=10,
        ),
        [(T, TOPIC, "describe")],
    ),
    "Admin/CreateTopics": (
        lambda s: s.admin.CreateTopics(
            admin_pb2.CreateTopicsRequest(
                topics=[admin_pb2.TopicSpec(name=TOPIC, partitions=1)], validate_only=True
            ),
            metadata=s.md,
            timeout=10,
        ),
        [(T, TOPIC, "create")],
    ),
    "Admin/DeleteTopics": (
        lambda s: s.admin.DeleteTopics(
            admin_pb2.DeleteTopicsRequest(names=["orders-gone"]), metadata=s.md, timeout=10
        ),
        [(T, "orders-gone", "delete")],
    ),
    "Admin/DescribeTopics": (
        lambda s: s.admin.DescribeTopics(
            admin_pb2.DescribeTopicsRequest(names=[TOPIC]), metadata=s.md, timeout=10
        ),
        [(T, TOPIC, "describe")],
    ),
    "Admin/AlterTopicConfig": (
        lambda s: s.admin.AlterTopicConfig(
            admin_pb2.AlterTopicConfigRequest(name=TOPIC, set={"retention_ms": "86400000"}),
            metadata=s.md,
            timeout=10,
        ),
        [(T, TOPIC, "alter")],
    ),
    "Admin/CreatePartitions": (
        lambda s: s.admin.CreatePartitions(
            admin_pb2.CreatePartitionsRequest(name=TOPIC, total_count=1),
            metadata=s.md,
            timeout=10,
        ),
        [(T, TOPIC, "alter")],
    ),
    "Group/Heartbeat": (
        lambda s: s.group.Heartbeat(
            group_pb2.HeartbeatRequest(
                group_id=GROUP, member_epoch=0, topics=[TOPIC], session_timeout_ms=5000
            ),
            metadata=s.md,
            timeout=10,
        ),
        [(G, GROUP, "read")],
    ),
    "Group/CommitOffsets": (
        lambda s: s.group.CommitOffsets(
            group_pb2.CommitOffsetsRequest(
                group_id=GROUP + "-standalone",
                member_epoch=-1,
                offsets=[group_pb2.OffsetCommit(topic=TOPIC, partition=0, offset=0)],
            ),
            metadata=s.md,
            timeout=10,
        ),
        [(G, GROUP + "-standalone", "read"), (T, TOPIC, "read")],
    ),
    "Group/FetchOffsets": (
        lambda s: s.group.FetchOffsets(
            group_pb2.FetchOffsetsRequest(
                group_id=GROUP, partitions=[common_pb2.TopicPartition(topic=TOPIC, partition=0)]
            ),
            metadata=s.md,
            timeout=10,
        ),
        [(G, GROUP, "describe"), (T, TOPIC, "describe")],
    ),
    "Group/DescribeGroup": (
        lambda s: s.group.DescribeGroup(
            group_pb2.DescribeGroupRequest(group_id=GROUP), metadata=s.md, timeout=10
        ),
        [(G, GROUP, "describe")],
    ),
    "Group/DeleteGroup": (
        lambda s: s.group.DeleteGroup(
            group_pb2.DeleteGroupRequest(group_id=GROUP + "-none"), metadata=s.md, timeout=10
        ),
        [(G, GROUP + "-none", "delete")],
    ),
    "Group/ResetOffsets": (
        lambda s: s.group.ResetOffsets(
            group_pb2.ResetOffsetsRequest(group_id=GROUP + "-reset", topic=TOPIC, to_earliest=True),
            metadata=s.md,
            timeout=10,
        ),
        [(G, GROUP + "-reset", "read"), (T, TOPIC, "read")],
    ),
    "Queue/Join": (
        lambda s: s.queue.Join(
            queue_pb2.QueueJoinRequest(group=QGROUP, member_id="m", topics=[TOPIC], create=True),
            metadata=s.md,
            timeout=10,
        ),
        [(G, QGROUP, "read"), (T, TOPIC, "read")],
    ),
    "Queue/Leave": (
        lambda s: s.queue.Leave(
            queue_pb2.QueueLeaveRequest(group=QGROUP, member_id="m"), metadata=s.md, timeout=10
        ),
        [(G, QGROUP, "read")],
    ),
    "Queue/Fetch": (  # carrying a reply: the inbox needs write, like a Produce to it
        lambda s: s.queue.Fetch(
            queue_pb2.QueueFetchRequest(
                group=QGROUP,
                member_id="m",
                max_records=1,
                replies=[queue_pb2.QueueReply(inbox=INBOX, batch=encode_batch([b"answer"]))],
            ),
            metadata=s.md,
            timeout=10,
        ),
        [(G, QGROUP, "read"), (T, INBOX, "write")],
    ),
    "Queue/Session": (  # every message is checked; a reply's inbox needs write
        lambda s: list(
            s.queue.Session(
                iter(
                    [
                        queue_pb2.QueueSessionRequest(
                            group=QGROUP,
                            member_id="m",
                            flush=True,
                            replies=[
                                queue_pb2.QueueReply(inbox=INBOX, batch=encode_batch([b"answer"]))
                            ],
                        )
                    ]
                ),
                metadata=s.md,
                timeout=10,
            )
        ),
        [(G, QGROUP, "read"), (T, INBOX, "write")],
    ),
    "Queue/Settle": (
        lambda s: s.queue.Settle(
            queue_pb2.QueueSettleRequest(group=QGROUP, member_id="m"), metadata=s.md, timeout=10
        ),
        [(G, QGROUP, "read")],
    ),
    "Queue/Peek": (
        lambda s: s.queue.Peek(
            queue_pb2.PeekRequest(group=QGROUP, max_records=1), metadata=s.md, timeout=10
        ),
        [(G, QGROUP, "read")],
    ),
    "Queue/CreateQueueGroup": (
        lambda s: s.queue.CreateQueueGroup(
            queue_pb2.CreateQueueGroupRequest(group=QGROUP + "-new", topics=[TOPIC]),
            metadata=s.md,
            timeout=10,
        ),
        [(G, QGROUP + "-new", "create"), (T, TOPIC, "read")],
    ),
    "Queue/AlterQueueGroup": (
        lambda s: s.queue.AlterQueueGroup(
            queue_pb2.AlterQueueGroupRequest(group=QGROUP), metadata=s.md, timeout=10
        ),
        [(G, QGROUP, "alter")],
    ),
    "Queue/DescribeQueueGroup": (
        lambda s: s.queue.DescribeQueueGroup(
            queue_pb2.DescribeQueueGroupRequest(group=QGROUP), metadata=s.md, timeout=10
        ),
        [(G, QGROUP, "describe")],
    ),
    "Queue/DeleteQueueGroup": (
        lambda s: s.queue.DeleteQueueGroup(
            queue_pb2.DeleteQueueGroupRequest(group=QGROUP + "-none"), metadata=s.md, timeout=10
        ),
        [(G, QGROUP + "-none", "delete")],
    ),
    "Queue/Redrive": (
        lambda s: s.queue.Redrive(
            queue_pb2.RedriveRequest(group=QGROUP, to_topic=TOPIC), metadata=s.md, timeout=10
        ),
        [(G, QGROUP, "alter"), (T, TOPIC, "write")],
    ),
    "Security/CreateAcls": (
        lambda s: s.acl.CreateAcls(security_pb2.CreateAclsRequest(), metadata=s.md, timeout=10),
        [(C, "cluster", "alter")],
    ),
    "Security/DeleteAcls": (
        lambda s: s.acl.DeleteAcls(
            security_pb2.DeleteAclsRequest(filter=security_pb2.Acl(principal="nobody")),
            metadata=s.md,
            timeout=10,
        ),
        [(C, "cluster", "alter")],
    ),
    "Security/CreateUser": (
        lambda s: s.acl.CreateUser(
            security_pb2.CreateUserRequest(name="matrix-user"), metadata=s.md, timeout=10
        ),
        [(C, "cluster", "alter")],
    ),
    "Security/DeleteUser": (
        lambda s: s.acl.DeleteUser(
            security_pb2.DeleteUserRequest(name="nobody"), metadata=s.md, timeout=10
        ),
        [(C, "cluster", "alter")],
    ),
    "Security/ListUsers": (
        lambda s: s.acl.ListUsers(security_pb2.ListUsersRequest(), metadata=s.md, timeout=10),
        [(C, "cluster", "describe")],
    ),
    "Security/ListAcls": (
        lambda s: s.acl.ListAcls(security_pb2.ListAclsRequest(), metadata=s.md, timeout=10),
        [(C, "cluster", "describe")],
    ),
    "Security/SetQuota": (
        lambda s: s.acl.SetQuota(
            security_pb2.SetQuotaRequest(principal="matrix-user", requests_per_s=0),
            metadata=s.md,
            timeout=10,
        ),
        [(C, "cluster", "alter")],
    ),
    "Security/ListQuotas": (
        lambda s: s.acl.ListQuotas(security_pb2.ListQuotasRequest(), metadata=s.md, timeout=10),
        [(C, "cluster", "describe")],
    ),
}
UNCHECKED = {
    "Log/InitProducerId",
    "Admin/ListTopics",
    "Group/ListGroups",
    "Queue/ListQueueGroups",
}
"""Open to every authenticated principal: they grant nothing by themselves, and the two
lists are filtered (tested below)."""

ERRORS = {
    T: TopicAuthorizationFailedError,
    G: GroupAuthorizationFailedError,
    C: ClusterAuthorizationFailedError,
}


def test_every_rpc_has_a_rule_and_a_matrix_row() -> None:
    from logstream.broker.server import _SERVICES

    methods = {f"{s.name}/{m.name}" for s in _SERVICES for m in s.methods}
    assert {m.removeprefix("/logstream.v1.") for m in CHECKS} == methods
    assert set(MATRIX) | UNCHECKED == methods


def _grant(admin: Admin, principal: str, rules: list[tuple[str, str, str]], **kw: str) -> None:
    admin.create_acls(
        [
            AclBinding(
                principal,
                rtype,
                kw.get("name", name) if rtype != C else "cluster",
                kw.get("pattern", "literal"),
                kw.get("operation", op),
                kw.get("permission", "allow"),
            )
            for rtype, name, op in rules
        ]
    )


def _outcome(call: Call, stubs: Stubs) -> Exception | None:
    try:
        call(stubs)
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return error_from_rpc(exc)
    return None


def _records(env: Env) -> list[bytes | None]:
    stubs = Stubs(env.address, env.tokens["admin"])
    resp = stubs.log.Fetch(
        log_pb2.FetchRequest(partitions=_fetch_partitions()), metadata=stubs.md, timeout=10
    )
    stubs.channel.close()
    return [b.value(i) for b in iter_batches(resp.partitions[0].records) for i in range(len(b))]


@pytest.mark.parametrize("method", sorted(MATRIX))
def test_matrix(env: Env, method: str) -> None:
    call, rules = MATRIX[method]
    alice = Stubs(env.address, env.tokens["alice"])
    admin = env.admin
    admin.delete_acls(AclBinding(principal="alice"))
    admin.delete_acls(AclBinding(principal="*"))
    before = _records(env)
    first_rtype = rules[0][0]

    refused = _outcome(call, alice)
    assert isinstance(refused, ERRORS[first_rtype]), (method, "no rule", refused)

    other_op = "delete" if rules[0][2] != "delete" else "create"
    if rules[0][2] != "describe":
        _grant(admin, "alice", rules, operation=other_op)
        refused = _outcome(call, alice)
        assert isinstance(refused, tuple(ERRORS.values())), (method, "other operation")
        admin.delete_acls(AclBinding(principal="alice"))

    if len(rules) > 1:  # every rule is needed: all but the last is not enough
        _grant(admin, "alice", rules[:-1])
        refused = _outcome(call, alice)
        assert isinstance(refused, ERRORS[rules[-1][0]]), (method, "partial rules", refused)
        admin.delete_acls(AclBinding(principal="alice"))

    _grant(admin, "alice", rules)
    assert _outcome(call, alice) is None, (method, "literal allow")
    admin.delete_acls(AclBinding(principal="alice"))

    if first_rtype != C:
        for rtype, name, op in rules:
            _grant(admin, "alice", [(rtype, name, op)], name=name[:3], pattern="prefix")
        assert _outcome(call, alice) is None, (method, "prefix allow")
        admin.delete_acls(AclBinding(principal="alice"))

    _grant(admin, "*", rules)
    assert _outcome(call, alice) is None, (method, "allow for *")
    _grant(admin, "alice", rules[:1], permission="deny")
    refused = _outcome(call, alice)
    assert isinstance(refused, ERRORS[first_rtype]), (method, "deny wins", refused)
    admin.delete_acls(AclBinding(principal="alice"))
    admin.delete_acls(AclBinding(principal="*"))

    bob = Stubs(env.address, env.tokens["bob"])
    _grant(admin, "alice", rules)
    assert isinstance(_outcome(call, bob), ERRORS[first_rtype]), (method, "someone else's rule")
    admin.delete_acls(AclBinding(principal="alice"))

    super_user = Stubs(env.address, env.tokens["admin"])
    assert _outcome(call, super_user) is None, (method, "super user")
    for s in (alice, bob, super_user):
        s.channel.close()
    if "Produce" not in method:
        assert _records(env) == before, "a refused or read-only call changed the log"


def test_refused_writes_never_land(env: Env) -> None:
    env.admin.delete_acls(AclBinding(principal="alice"))
    before = _records(env)
    alice = Stubs(env.address, env.tokens["alice"])
    for method in ("Log/Produce", "Log/ProduceStream"):
        assert _outcome(MATRIX[method][0], alice) is not None
    alice.channel.close()
    assert _records(env) == before


def test_missing_and_forbidden_topics_answer_alike(env: Env) -> None:
    env.admin.delete_acls(AclBinding(principal="alice"))
    alice = Admin(env.address, token=env.tokens["alice"])
    errors = []
    for name in (TOPIC, "no-such-topic"):
        with pytest.raises(TopicAuthorizationFailedError) as info:
            alice.describe_topic(name)
        errors.append(str(info.value).replace(name, "NAME"))
    assert errors[0] == errors[1]
    alice.close()


def test_lists_show_only_what_the_principal_may_describe(env: Env) -> None:
    admin = env.admin
    admin.create_topic("visible-1")
    admin.delete_acls(AclBinding(principal="alice"))
    alice = Admin(env.address, token=env.tokens["alice"])
    assert alice.list_topics() == []
    _grant(admin, "alice", [(T, "visible-", "read")], pattern="prefix")
    assert [t.name for t in alice.list_topics()] == ["visible-1"]
    admin.delete_acls(AclBinding(principal="alice"))
    alice.close()


def test_an_open_subscription_ends_when_its_rule_is_removed(env: Env) -> None:
    admin = env.admin
    admin.delete_acls(AclBinding(principal="alice"))
    _grant(admin, "alice", [(T, TOPIC, "read")])
    consumer = Consumer(env.address, token=env.tokens["alice"], auto_offset_reset="latest")
    consumer.assign([(TOPIC, 0)])
    assert consumer.poll(timeout=0.5) == []  # the subscription is open and waiting
    admin.delete_acls(AclBinding(principal="alice"))
    deadline = time.monotonic() + 10
    with pytest.raises(TopicAuthorizationFailedError):
        while time.monotonic() < deadline:
            consumer.poll(timeout=0.2)
    producer = Producer(env.address, token=env.tokens["admin"])
    producer.send(TOPIC, value=b"after revocation", partition=0).result(10)
    producer.close()
    with pytest.raises(TopicAuthorizationFailedError):
        consumer.poll(timeout=1.0)
    consumer.close()


def test_decisions_are_cached_not_a_scan_per_batch(env: Env) -> None:
    acls = env.server.security.acls
    admin = env.admin
    admin.delete_acls(AclBinding(principal="alice"))
    _grant(admin, "alice", [(T, TOPIC, "write")])
    before = acls.rule_scans
    producer = Producer(env.address, token=env.tokens["alice"], linger_ms=0)
    for i in range(50):
        producer.send(TOPIC, value=b"%d" % i, partition=0).result(10)
    producer.close()
    scans = acls.rule_scans - before
    assert 1 <= scans <= 2  # the check ran, once per distinct decision, not per batch
    admin.delete_acls(AclBinding(principal="alice"))


def test_audit_lines_for_admin_actions_and_denials(env: Env, caplog: Any) -> None:
    caplog.set_level("INFO", logger="logstream.audit")
    # The audit log keeps at most 20 lines a second and this module's broker has just served
    # the matrix: start in a fresh one-second window so the lines below are not dropped.
    window = int(time.monotonic())
    while int(time.monotonic()) == window:
        time.sleep(0.01)
    env.admin.delete_acls(AclBinding(principal="alice"))
    alice = Admin(env.address, token=env.tokens["alice"])
    with pytest.raises(TopicAuthorizationFailedError):
        alice.delete_topic(TOPIC)
    alice.close()
    env.admin.create_acls([AclBinding("carol", T, "x", "literal", "read", "allow")])
    text = caplog.text
    assert "event='denied' principal='alice'" in text and "operation='delete'" in text
    assert "event='allowed' principal='admin'" in text and "CreateAcls" in text
    assert env.tokens["alice"] not in text
