"""GroupCoordinator end to end over a real LogManager: commits, fencing, describe, reset,
delete, expiry and restart."""

from __future__ import annotations

import pytest

from logstream.coordinator import CoordinatorConfig, GroupCoordinator, ResetSpec
from logstream.coordinator import coordinator as coordinator_module
from logstream.errors import (
    GroupIdNotFoundError,
    IllegalGenerationError,
    InvalidCommitOffsetSizeError,
    InvalidRequestError,
    InvalidTopicError,
    NonEmptyGroupError,
    OffsetOutOfRangeError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from logstream.storage import LogManager
from logstream.types import OffsetAndMetadata, TopicPartition

from .conftest import SETTINGS, produce

TP0 = TopicPartition("orders", 0)
TP1 = TopicPartition("orders", 1)


def join(coord, group="billing", topics=("orders",), **kw):
    return coord.heartbeat(group, "", 0, topics=topics, **kw)


def beat(coord, r, owned=None, group="billing"):
    return coord.heartbeat(
        group, r.member_id, r.member_epoch, owned=r.assignment if owned is None else owned
    )


@pytest.fixture
def orders(storage):
    storage.create_topic("orders", 2)
    return storage


def test_member_commits_and_fetches(coord, orders):
    produce(orders, "orders", 0, 10, ts=1_000)
    r = join(coord)
    assert r.assignment == {TP0, TP1}
    result = coord.commit("billing", r.member_id, r.member_epoch, {TP0: OffsetAndMetadata(4, "x")})
    assert result == {TP0: None}
    got = coord.fetch_offsets("billing", [TP0, TP1])
    assert got[TP0].offset == 4 and got[TP0].metadata == "x" and got[TP1] is None
    assert list(coord.fetch_offsets("billing")) == [TP0]
    assert coord.fetch_offsets("nobody") == {}


def test_stale_epoch_commit_is_rejected(coord, orders):
    a = join(coord)
    b = join(coord)
    a2 = beat(coord, a)  # a learns of the rebalance and revokes one partition
    a3 = beat(coord, a2)
    assert a3.member_epoch > a.member_epoch
    with pytest.raises(IllegalGenerationError, match="stale member epoch"):
        coord.commit("billing", a.member_id, a.member_epoch, {TP0: 0})
    assert coord.commit("billing", a3.member_id, a3.member_epoch, {TP0: 0}) == {TP0: None}
    with pytest.raises(UnknownMemberIdError):
        coord.commit("billing", "zombie", 1, {TP0: 0})
    assert b.member_id


def test_commit_validates_each_partition(coord, orders):
    produce(orders, "orders", 0, 3, ts=1)
    r = join(coord)
    out = coord.commit(
        "billing",
        r.member_id,
        r.member_epoch,
        {
            TP0: OffsetAndMetadata(3),
            TopicPartition("orders", 9): OffsetAndMetadata(0),
            TopicPartition("nope", 0): OffsetAndMetadata(0),
            TP1: OffsetAndMetadata(-1),
        },
    )
    assert out[TP0] is None
    assert isinstance(out[TopicPartition("orders", 9)], UnknownTopicOrPartitionError)
    assert isinstance(out[TopicPartition("nope", 0)], UnknownTopicOrPartitionError)
    assert isinstance(out[TP1], OffsetOutOfRangeError) and "negative" in str(out[TP1])
    past = coord.commit("billing", r.member_id, r.member_epoch, {TP0: 4})[TP0]
    assert isinstance(past, OffsetOutOfRangeError) and "ends at 3" in str(past)
    big = coord.commit(
        "billing", r.member_id, r.member_epoch, {TP0: OffsetAndMetadata(1, "x" * 5000)}
    )[TP0]
    assert isinstance(big, InvalidCommitOffsetSizeError)
    assert coord.fetch_offsets("billing", [TP0])[TP0].offset == 3


def test_standalone_commit_only_while_the_group_is_empty(coord, orders):
    assert coord.commit("tool", "", -1, {TP0: 0}) == {TP0: None}
    join(coord, group="tool")
    with pytest.raises(UnknownMemberIdError, match="active members"):
        coord.commit("tool", "", -1, {TP0: 0})


def test_bad_group_requests(coord, orders):
    with pytest.raises(InvalidRequestError):
        coord.heartbeat("", "", 0, topics=["orders"])
    with pytest.raises(InvalidTopicError):
        join(coord, topics=["__consumer_offsets"])
    with pytest.raises(UnknownMemberIdError):
        coord.heartbeat("ghost", "m", 3)
    with pytest.raises(GroupIdNotFoundError):
        coord.describe_group("ghost")
    with pytest.raises(GroupIdNotFoundError):
        coord.delete_group("ghost")
    with pytest.raises(GroupIdNotFoundError):
        coord.reset_offsets("ghost", "orders", None, ResetSpec("earliest"))
    with pytest.raises(InvalidRequestError):
        ResetSpec("sideways")
    with pytest.raises(InvalidRequestError, match="negative"):
        ResetSpec("offset", -3)


def test_describe_shows_lag_and_time_lag(coord, orders, clock):
    t0 = clock.now_ms()
    produce(orders, "orders", 0, 10, ts=t0)  # timestamps t0 .. t0+9
    produce(orders, "orders", 1, 4, ts=t0)
    r = join(coord, client_id="svc-1")
    coord.commit("billing", r.member_id, r.member_epoch, {TP0: 6, TP1: 4})
    clock.advance(60_000)
    d = coord.describe_group("billing")
    assert d.state == "Stable" and d.assignor == "sticky" and d.group_epoch >= 1
    assert [m.client_id for m in d.members] == ["svc-1"]
    assert d.members[0].assignment == (TP0, TP1)
    by_p = {p.partition: p for p in d.partitions}
    assert (by_p[0].committed_offset, by_p[0].log_end_offset, by_p[0].lag) == (6, 10, 4)
    assert by_p[0].time_lag_ms == clock.now_ms() - (t0 + 6)
    assert by_p[0].member_id == r.member_id
    assert (by_p[1].lag, by_p[1].time_lag_ms) == (0, -1)  # caught up


def test_describe_of_an_empty_group_with_offsets(coord, orders, clock):
    produce(orders, "orders", 0, 5, ts=clock.now_ms())
    produce(orders, "orders", 1, 4, ts=clock.now_ms())
    coord.commit("old", "", -1, {TP0: 2})
    d = coord.describe_group("old")
    assert d.state == "Empty" and d.members == ()
    # partition 1 was never committed: listed too, its whole backlog as lag
    assert [(p.partition, p.committed_offset, p.lag) for p in d.partitions] == [
        (0, 2, 3),
        (1, -1, 4),
    ]
    assert [g.group_id for g in coord.list_groups()] == ["old"]


def test_list_groups(coord, orders):
    join(coord, group="a")
    join(coord, group="b")
    coord.commit("c", "", -1, {TP0: 0})
    summary = {g.group_id: (g.state, g.members) for g in coord.list_groups()}
    assert summary == {"a": ("Stable", 1), "b": ("Stable", 1), "c": ("Empty", 0)}


def test_reset_offsets_plans_and_executes(coord, orders, clock):
    t0 = clock.now_ms()
    produce(orders, "orders", 0, 10, ts=t0)
    produce(orders, "orders", 0, 10, ts=t0 + 100)
    produce(orders, "orders", 1, 5, ts=t0)
    r = join(coord)
    coord.commit("billing", r.member_id, r.member_epoch, {TP0: 12, TP1: 1})
    with pytest.raises(NonEmptyGroupError, match="active"):
        coord.reset_offsets("billing", "orders", None, ResetSpec("earliest"))
    coord.heartbeat("billing", r.member_id, -1)  # leave

    def plan(spec, parts=None, execute=False):
        out = coord.reset_offsets("billing", "orders", parts, spec, execute=execute)
        return {tp.partition: o for tp, o in out.items()}

    assert plan(ResetSpec("earliest")) == {0: 0, 1: 0}
    assert plan(ResetSpec("latest")) == {0: 20, 1: 5}
    assert plan(ResetSpec("offset", 7)) == {0: 7, 1: 5}  # clamped to the log end
    assert plan(ResetSpec("shift", -5)) == {0: 7, 1: 0}  # clamped to the log start
    assert plan(ResetSpec("shift", 3), [0]) == {0: 15}
    assert plan(ResetSpec("timestamp", t0 + 105)) == {0: 15, 1: 5}
    assert plan(ResetSpec("timestamp", t0 + 3)) == {0: 3, 1: 3}
    # a dry run changed nothing
    assert coord.fetch_offsets("billing", [TP0])[TP0].offset == 12
    plan(ResetSpec("timestamp", t0 + 105), execute=True)
    assert coord.fetch_offsets("billing", [TP0])[TP0].offset == 15
    with pytest.raises(UnknownTopicOrPartitionError):
        plan(ResetSpec("earliest"), [5])
    with pytest.raises(UnknownTopicOrPartitionError):
        coord.reset_offsets("billing", "nope", None, ResetSpec("earliest"))
    # the group resumes where the reset put it
    r = join(coord)
    assert coord.fetch_offsets("billing", r.assignment)[TP0].offset == 15


def test_delete_group(coord, orders):
    r = join(coord)
    coord.commit("billing", r.member_id, r.member_epoch, {TP0: 0})
    with pytest.raises(NonEmptyGroupError):
        coord.delete_group("billing")
    coord.heartbeat("billing", r.member_id, -1)
    coord.delete_group("billing")
    assert coord.list_groups() == []
    assert coord.fetch_offsets("billing") == {}
    with pytest.raises(GroupIdNotFoundError):
        coord.delete_group("billing")


def test_expire_fences_silent_members(coord, orders, clock):
    a = join(coord, session_timeout_ms=1_000)
    b = join(coord, session_timeout_ms=1_000)
    beat(coord, a)
    clock.advance(800)
    beat(coord, b)
    clock.advance(300)
    report = coord.expire()
    assert report.fenced_members == {"billing": [a.member_id]}
    b2 = beat(coord, b)
    b3 = beat(coord, b2)
    assert b3.assignment == {TP0, TP1}


def test_offsets_of_an_empty_group_expire_after_retention(storage, clock):
    storage.create_topic("orders", 2)
    config = CoordinatorConfig(groups=SETTINGS, offsets_retention_ms=60_000)
    coord = GroupCoordinator(storage, clock, config)
    r = join(coord)
    coord.commit("billing", r.member_id, r.member_epoch, {TP0: 0})
    coord.commit("solo", "", -1, {TP0: 0})
    clock.advance(120_000)
    coord.heartbeat("billing", r.member_id, r.member_epoch)  # still active
    assert coord.expire().expired_groups == ["solo"]
    coord.heartbeat("billing", r.member_id, -1)
    clock.advance(59_000)
    assert coord.expire().expired_groups == []
    clock.advance(2_000)
    assert coord.expire().expired_groups == ["billing"]
    assert coord.list_groups() == []


def test_committed_offsets_survive_a_restart(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as lm:
        lm.create_topic("orders", 2)
        coord = GroupCoordinator(lm, clock, CoordinatorConfig(groups=SETTINGS))
        r = join(coord)
        coord.commit("billing", r.member_id, r.member_epoch, {TP0: 0, TP1: 0})
    with LogManager.open(tmp_path, clock=clock) as lm:
        coord = GroupCoordinator(lm, clock, CoordinatorConfig(groups=SETTINGS))
        assert {tp: c.offset for tp, c in coord.fetch_offsets("billing").items()} == {
            TP0: 0,
            TP1: 0,
        }
        assert [g.group_id for g in coord.list_groups()] == ["billing"]
        assert "__consumer_offsets" in lm.topics()


def test_two_groups_each_get_every_partition(coord, orders):
    a = join(coord, group="billing")
    b = join(coord, group="audit")
    assert a.assignment == b.assignment == {TP0, TP1}


def test_commit_for_a_partition_the_member_does_not_own_is_rejected(coord, orders):
    produce(orders, "orders", 0, 5, ts=1)
    produce(orders, "orders", 1, 5, ts=1)
    a = join(coord)
    assert a.assignment == {TP0, TP1}
    b = join(coord)
    a2 = beat(coord, a)  # a is told to give one partition up
    (moved,) = {TP0, TP1} - a2.assignment
    # Before it reports the partition released, a may commit it (the on_revoke commit).
    assert coord.commit("billing", a2.member_id, a2.member_epoch, {moved: 1}) == {moved: None}
    a3 = beat(coord, a2)  # released: a moves to the new epoch
    b2 = beat(coord, b)
    assert b2.assignment == {moved}
    assert coord.commit("billing", b2.member_id, b2.member_epoch, {moved: 3}) == {moved: None}
    # a's epoch is current, but the partition is b's now: a late commit of a must not
    # overwrite b's progress.
    (kept,) = a3.assignment
    out = coord.commit("billing", a3.member_id, a3.member_epoch, {moved: 2, kept: 4})
    assert out[kept] is None
    assert isinstance(out[moved], IllegalGenerationError)
    assert "not assigned to member" in str(out[moved])
    got = coord.fetch_offsets("billing", [moved, kept])
    assert got[moved].offset == 3 and got[kept].offset == 4


def test_heartbeat_limits_on_identifiers_and_subscriptions(coord, orders):
    with pytest.raises(InvalidRequestError, match="instance id of 256 characters"):
        join(coord, instance_id="i" * 256)
    with pytest.raises(InvalidRequestError, match="client id of 300 characters"):
        join(coord, client_id="c" * 300)
    with pytest.raises(InvalidRequestError, match="subscription of 1001 topics"):
        join(coord, topics=[f"t{i}" for i in range(1001)])
    with pytest.raises(InvalidRequestError, match="topic name of 250 characters"):
        join(coord, topics=["orders", "x" * 250])
    with pytest.raises(InvalidRequestError, match="assignor name"):
        join(coord, assignor="a" * 65)
    r = join(coord, instance_id="i" * 255, client_id="c" * 255)
    assert r.assignment == {TP0, TP1}
    with pytest.raises(InvalidRequestError, match="client id"):  # also on a later heartbeat
        coord.heartbeat("billing", r.member_id, r.member_epoch, client_id="c" * 256)
    assert coord.list_groups()[0].members == 1


def test_group_max_size_is_a_broker_setting(storage, clock):
    from logstream.coordinator import GroupSettings
    from logstream.errors import GroupMaxSizeReachedError

    storage.create_topic("orders", 2)
    settings = GroupSettings(min_session_timeout_ms=100, max_size=2)
    coord = GroupCoordinator(storage, clock, CoordinatorConfig(groups=settings))
    join(coord)
    join(coord)
    with pytest.raises(GroupMaxSizeReachedError, match="group_max_size 2"):
        join(coord)
    assert coord.describe_group("billing").members.__len__() == 2
    join(coord, group="other")  # per group


def test_expiry_of_an_offsets_only_group_holds_the_group_lock(storage, clock):
    """A group that exists only as stored offsets (after a restart, or after its Group
    object was dropped) is expired under its group lock: a standalone commit landing while
    expire() decides must not be wiped by the deletion."""
    import threading

    storage.create_topic("orders", 2)
    config = CoordinatorConfig(groups=SETTINGS, offsets_retention_ms=60_000)
    GroupCoordinator(storage, clock, config).commit("solo", "", -1, {TP0: 0})
    coord = GroupCoordinator(storage, clock, config)  # a restart: "solo" is offsets only
    clock.advance(120_000)
    produce(storage, "orders", 0, 5, ts=1)
    real = coord.offsets.last_commit_ms
    landed = threading.Event()

    def commit_meanwhile() -> None:
        coord.commit("solo", "", -1, {TP0: 5})
        landed.set()

    def last_commit_ms(group_id: str):
        value = real(group_id)
        if group_id == "solo" and not hasattr(last_commit_ms, "t"):
            last_commit_ms.t = threading.Thread(target=commit_meanwhile)
            last_commit_ms.t.start()
            landed.wait(0.5)  # with the lock held, the commit waits for expire() instead
        return value

    coord.offsets.last_commit_ms = last_commit_ms
    report = coord.expire()
    last_commit_ms.t.join(5)
    assert landed.is_set()
    assert report.expired_groups == ["solo"]
    got = coord.fetch_offsets("solo", [TP0])[TP0]
    assert got is not None and got.offset == 5, "a commit made during expiry was deleted"
    assert [g.group_id for g in coord.list_groups()] == ["solo"]


def test_reset_of_an_offsets_only_group_holds_the_group_lock(storage, clock, monkeypatch):
    """A ``--shift-by`` reset of a group that exists only as stored offsets runs under the
    group lock: a standalone commit arriving between the plan (which reads the committed
    offset) and its execution waits, so it is not overwritten by a plan built on the stale
    offset. The outcome is one of the two serial orders, never a third value."""
    import threading

    storage.create_topic("orders", 2)
    produce(storage, "orders", 0, 100, ts=1)
    config = CoordinatorConfig(groups=SETTINGS)
    GroupCoordinator(storage, clock, config).commit("solo", "", -1, {TP0: 10})
    coord = GroupCoordinator(storage, clock, config)  # a restart: "solo" is offsets only
    real = coordinator_module.reset_target
    landed = threading.Event()
    threads: list[threading.Thread] = []

    def commit_meanwhile() -> None:
        coord.commit("solo", "", -1, {TP0: 50})
        landed.set()

    def reset_target(log, committed, target):
        if not threads:
            threads.append(threading.Thread(target=commit_meanwhile))
            threads[0].start()
            landed.wait(0.5)  # with the lock held, the commit waits for the reset instead
        return real(log, committed, target)

    monkeypatch.setattr(coordinator_module, "reset_target", reset_target)
    plan = coord.reset_offsets("solo", "orders", [0], ResetSpec("shift", 5), execute=True)
    threads[0].join(5)
    assert landed.is_set()
    assert plan == {TP0: 15}
    got = coord.fetch_offsets("solo", [TP0])[TP0]
    # reset then commit: 50; commit then reset: 55. 15 means the commit was lost.
    assert got is not None and got.offset in (50, 55), f"a racing commit was lost: {got}"


def test_delete_of_an_offsets_only_group_holds_the_group_lock(storage, clock):
    """Deleting a group that exists only as stored offsets runs under the group lock: a
    consumer that joins and commits meanwhile waits for the delete, then finds a new group;
    its commit survives (it is not wiped by the delete's tombstone, and the delete does not
    remove the offsets of a group that has just become active)."""
    import threading

    storage.create_topic("orders", 2)
    config = CoordinatorConfig(groups=SETTINGS)
    GroupCoordinator(storage, clock, config).commit("billing", "", -1, {TP0: 0})
    coord = GroupCoordinator(storage, clock, config)  # a restart: "billing" is offsets only
    produce(storage, "orders", 0, 5, ts=1)
    real = coord.offsets.delete_group
    landed = threading.Event()
    threads: list[threading.Thread] = []

    def join_and_commit() -> None:
        r = join(coord)
        coord.commit("billing", r.member_id, r.member_epoch, {TP0: 5})
        landed.set()

    def delete_group(group_id: str) -> None:
        if not threads:
            threads.append(threading.Thread(target=join_and_commit))
            threads[0].start()
            landed.wait(0.5)  # with the lock held, the join waits for the delete instead
        real(group_id)

    coord.offsets.delete_group = delete_group
    coord.delete_group("billing")
    threads[0].join(5)
    assert landed.is_set()
    got = coord.fetch_offsets("billing", [TP0])[TP0]
    assert got is not None and got.offset == 5, "the commit of a member was deleted"
    assert [(g.group_id, g.members) for g in coord.list_groups()] == [("billing", 1)]


def test_admin_calls_on_unknown_groups_leave_no_group_behind(coord, orders, clock):
    with pytest.raises(GroupIdNotFoundError):
        coord.delete_group("ghost")
    with pytest.raises(GroupIdNotFoundError):
        coord.reset_offsets("ghost", "orders", None, ResetSpec("earliest"))
    assert coord.groups.ids() == set()
    coord.commit("solo", "", -1, {TP0: 0})
    coord = GroupCoordinator(orders, clock, coord.config)  # a restart: "solo" is offsets only
    coord.reset_offsets("solo", "orders", None, ResetSpec("earliest"), execute=True)
    assert coord.groups.ids() == set()
    assert [g.group_id for g in coord.list_groups()] == ["solo"]
    coord.delete_group("solo")
    assert coord.list_groups() == [] and coord.groups.ids() == set()
