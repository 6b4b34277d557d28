"""The Group gRPC service over a real in-process broker: pb mapping and error codes."""

from __future__ import annotations

import grpc
import pytest

from logstream.codec import encode_batch
from logstream.errors import (
    GroupIdNotFoundError,
    IllegalGenerationError,
    InvalidRequestError,
    NonEmptyGroupError,
)
from logstream.protocol import admin_pb2, admin_pb2_grpc, common_pb2, group_pb2, group_pb2_grpc
from logstream.protocol.status import error_from_rpc
from logstream.testing.broker import run_broker


@pytest.fixture
def broker(tmp_path):
    with run_broker(tmp_path / "data") as b:
        b.broker.manager.create_topic("orders", 2)
        log = b.broker.manager.get_log("orders", 0)
        log.append(encode_batch([b"x"] * 10, timestamps=1_000))
        yield b


@pytest.fixture
def stub(broker):
    with grpc.insecure_channel(broker.address) as ch:
        yield group_pb2_grpc.GroupStub(ch)


def call(fn, req):
    try:
        return fn(req)
    except grpc.RpcError as err:
        raise error_from_rpc(err) from None


def test_join_commit_describe_over_grpc(stub, broker):
    r = call(
        stub.Heartbeat,
        group_pb2.HeartbeatRequest(group_id="g", member_epoch=0, topics=["orders"], client_id="c1"),
    )
    assert r.member_id and r.member_epoch == 1 and r.assignment_changed
    assert sorted((p.topic, p.partition) for p in r.assignment) == [("orders", 0), ("orders", 1)]
    c = call(
        stub.CommitOffsets,
        group_pb2.CommitOffsetsRequest(
            group_id="g",
            member_id=r.member_id,
            member_epoch=r.member_epoch,
            offsets=[
                group_pb2.OffsetCommit(topic="orders", partition=0, offset=4, metadata="m"),
                group_pb2.OffsetCommit(topic="orders", partition=7, offset=0),
                group_pb2.OffsetCommit(topic="orders", partition=1, offset=-2),
            ],
        ),
    )
    errs = {p.partition: (p.error_code, p.error_message) for p in c.partitions}
    assert errs[0] == (0, "")
    assert errs[7][0] == 3 and "partition" in errs[7][1]
    assert errs[1][0] == 1 and "negative" in errs[1][1]
    f = call(stub.FetchOffsets, group_pb2.FetchOffsetsRequest(group_id="g"))
    assert [(o.partition, o.offset, o.metadata) for o in f.offsets] == [(0, 4, "m")]
    d = call(stub.DescribeGroup, group_pb2.DescribeGroupRequest(group_id="g"))
    assert d.state == "Stable" and d.members[0].client_id == "c1"
    lag = {p.partition: (p.committed_offset, p.log_end_offset, p.lag) for p in d.partitions}
    assert lag == {0: (4, 10, 6), 1: (-1, 0, 0)}
    groups = call(stub.ListGroups, group_pb2.ListGroupsRequest())
    assert [(g.group_id, g.state, g.members) for g in groups.groups] == [("g", "Stable", 1)]

    with pytest.raises(IllegalGenerationError):
        call(
            stub.CommitOffsets,
            group_pb2.CommitOffsetsRequest(group_id="g", member_id=r.member_id, member_epoch=9),
        )
    with pytest.raises(NonEmptyGroupError):
        call(stub.DeleteGroup, group_pb2.DeleteGroupRequest(group_id="g"))
    with pytest.raises(NonEmptyGroupError):
        call(
            stub.ResetOffsets,
            group_pb2.ResetOffsetsRequest(group_id="g", topic="orders", to_earliest=True),
        )
    call(
        stub.Heartbeat,
        group_pb2.HeartbeatRequest(group_id="g", member_id=r.member_id, member_epoch=-1),
    )
    plan = call(
        stub.ResetOffsets,
        group_pb2.ResetOffsetsRequest(group_id="g", topic="orders", shift_by=-3, execute=True),
    )
    assert [(p.partition, p.offset) for p in plan.plan] == [(0, 1), (1, 0)]
    with pytest.raises(InvalidRequestError, match="target"):
        call(stub.ResetOffsets, group_pb2.ResetOffsetsRequest(group_id="g", topic="orders"))
    call(stub.DeleteGroup, group_pb2.DeleteGroupRequest(group_id="g"))
    with pytest.raises(GroupIdNotFoundError):
        call(stub.DescribeGroup, group_pb2.DescribeGroupRequest(group_id="g"))


def test_offsets_topic_is_hidden_from_topic_listing(broker):
    with grpc.insecure_channel(broker.address) as ch:
        topics = admin_pb2_grpc.AdminStub(ch).ListTopics(admin_pb2.ListTopicsRequest())
    names = [t.name for t in topics.topics]
    assert "orders" in names and "__consumer_offsets" not in names
    assert "__consumer_offsets" in broker.broker.manager.topics()
    assert common_pb2.TopicPartition  # the wire types are shared


def test_a_late_heartbeat_is_recognised_by_its_request_seq_over_grpc(stub, broker):
    def hb(seq, member_id="", epoch=0, owned=(), client_id=""):
        return call(
            stub.Heartbeat,
            group_pb2.HeartbeatRequest(
                group_id="late",
                member_id=member_id,
                member_epoch=epoch,
                topics=["orders"],
                owned=[common_pb2.TopicPartition(topic="orders", partition=p) for p in owned],
                request_seq=seq,
                client_id=client_id,
            ),
        )

    a = hb(1)
    hb(3, a.member_id, a.member_epoch, owned=[0, 1])
    hb(1)  # B joins: one partition must move from A to B
    hb(2, a.member_id, a.member_epoch, owned=[])  # late: must not release anything
    coord = broker.broker.coordinator
    (member,) = [m for m in coord.describe_group("late").members if m.member_id == a.member_id]
    assert len(member.assignment) == 2
    with pytest.raises(InvalidRequestError, match="client id"):
        hb(1, client_id="c" * 256)


def test_group_max_size_over_grpc(tmp_path):
    from logstream.errors import GroupMaxSizeReachedError

    with run_broker(tmp_path / "d", group_max_size=2) as b:
        b.broker.manager.create_topic("orders", 2)
        with grpc.insecure_channel(b.address) as ch:
            s = group_pb2_grpc.GroupStub(ch)
            req = group_pb2.HeartbeatRequest(group_id="g", member_epoch=0, topics=["orders"])
            call(s.Heartbeat, req)
            call(s.Heartbeat, req)
            with pytest.raises(GroupMaxSizeReachedError, match="group_max_size 2"):
                call(s.Heartbeat, req)
