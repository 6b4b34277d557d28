"""The group state machine: incremental reconciliation, sessions, static membership."""

from __future__ import annotations

import random

import pytest

from logstream.coordinator.group import RECONCILING, STABLE, Group, GroupSettings
from logstream.errors import (
    IllegalGenerationError,
    InvalidRequestError,
    InvalidSessionTimeoutError,
    UnknownMemberIdError,
)
from logstream.types import TopicPartition

SETTINGS = GroupSettings(min_session_timeout_ms=100, default_session_timeout_ms=10_000)


class Sim:
    """Members that behave like well-mannered clients: they revoke what the broker withholds
    and start what it lists; ``now`` is shared monotonic time in seconds."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.group = Group("g", SETTINGS)
        self.counts = counts
        self.now = 0.0
        self.owned: dict[str, set[TopicPartition]] = {}
        self.epoch: dict[str, int] = {}

    def join(self, topics=("t",), instance_id: str = "", timeout_ms: int = 10_000) -> str:
        r = self.group.heartbeat(
            member_id="",
            member_epoch=0,
            now=self.now,
            now_ms=int(self.now * 1000),
            partition_counts=self.counts,
            topics=topics,
            instance_id=instance_id,
            session_timeout_ms=timeout_ms,
        )
        self.owned[r.member_id] = set(r.assignment)
        self.epoch[r.member_id] = r.member_epoch
        return r.member_id

    def beat(self, m: str):
        r = self.group.heartbeat(
            member_id=m,
            member_epoch=self.epoch[m],
            now=self.now,
            now_ms=int(self.now * 1000),
            partition_counts=self.counts,
            owned=sorted(self.owned[m]),
        )
        # revoke what is no longer listed, start what is new
        self.owned[m] = set(r.assignment)
        self.epoch[m] = r.member_epoch
        return r

    def leave(self, m: str, epoch: int = -1) -> None:
        self.group.heartbeat(
            member_id=m,
            member_epoch=epoch,
            now=self.now,
            now_ms=int(self.now * 1000),
            partition_counts=self.counts,
        )
        del self.owned[m]

    def settle(self, rounds: int = 6) -> None:
        for _ in range(rounds):
            for m in list(self.owned):
                self.beat(m)
                self.check()

    def check(self) -> None:
        self.group.check_invariants()
        seen: set[TopicPartition] = set()
        for tps in self.owned.values():
            assert not (tps & seen), "two members own one partition"
            seen |= tps


def test_three_members_on_six_partitions_each_get_two():
    sim = Sim({"t": 6})
    members = [sim.join() for _ in range(3)]
    sim.settle()
    assert sorted(len(sim.owned[m]) for m in members) == [2, 2, 2]
    assert sim.group.state == STABLE
    assert len({sim.epoch[m] for m in members}) == 1


def test_join_moves_a_partition_only_after_its_owner_revoked_it():
    sim = Sim({"t": 4})
    a = sim.join()
    sim.settle()
    assert len(sim.owned[a]) == 4
    epoch_before = sim.group.group_epoch
    b = sim.join()
    assert sim.group.group_epoch == epoch_before + 1
    assert sim.owned[b] == set()  # a still owns everything
    assert sim.group.state == RECONCILING
    r = sim.group.heartbeat(  # b asks again before a has revoked: still nothing
        member_id=b, member_epoch=sim.epoch[b], now=0, now_ms=0, partition_counts=sim.counts
    )
    assert r.assignment == frozenset()
    assert r.heartbeat_interval_ms == SETTINGS.reconcile_heartbeat_interval_ms
    kept_before = set(sim.owned[a])
    ra = sim.beat(a)  # a is told to keep 2 of its 4
    assert ra.assignment_changed and len(ra.assignment) == 2 and ra.assignment <= kept_before
    assert sim.beat(b).assignment == frozenset()  # a has not confirmed yet
    sim.beat(a)  # a reports the 2 no longer owned: released
    rb = sim.beat(b)
    assert rb.assignment == kept_before - ra.assignment
    sim.settle()
    assert sim.group.state == STABLE


def test_members_that_keep_their_partitions_are_never_interrupted():
    sim = Sim({"t": 32})
    members = [sim.join() for _ in range(4)]
    sim.settle()
    before = {m: set(sim.owned[m]) for m in members}
    new = sim.join()
    for _ in range(6):
        for m in [*members, new]:
            sim.beat(m)
            if m in members:
                # never loses a partition it keeps in the end, and never gains during the move
                assert sim.owned[m] <= before[m]
    assert sorted(len(v) for v in sim.owned.values()) == [6, 6, 6, 7, 7]
    moved = sum(len(before[m] - sim.owned[m]) for m in members)
    assert moved == len(sim.owned[new]) == 6


def test_leave_releases_partitions_at_once():
    sim = Sim({"t": 6})
    a, b, c = (sim.join() for _ in range(3))
    sim.settle()
    gone = set(sim.owned[c])
    sim.leave(c)
    sim.beat(a)
    sim.beat(b)
    assert gone <= sim.owned[a] | sim.owned[b]
    assert sorted(len(sim.owned[m]) for m in (a, b)) == [3, 3]


def test_session_timeout_fences_a_silent_member_and_moves_its_partitions():
    sim = Sim({"t": 6})
    a, b, c = (sim.join(timeout_ms=1_000) for _ in range(3))
    sim.settle()
    dead = set(sim.owned[c])
    sim.now += 0.9
    sim.beat(a)
    sim.beat(b)
    assert sim.group.expire(sim.now, 0) == []
    sim.now += 0.2  # c has been silent for 1.1 s
    assert sim.group.expire(sim.now, 0) == [c]
    del sim.owned[c]
    sim.settle()
    assert dead <= sim.owned[a] | sim.owned[b]
    with pytest.raises(UnknownMemberIdError, match="rejoin"):
        sim.group.heartbeat(
            member_id=c, member_epoch=sim.epoch[c], now=sim.now, now_ms=0, partition_counts={}
        )


def test_static_member_rejoining_within_the_session_gets_its_partitions_back():
    sim = Sim({"t": 6})
    a = sim.join(instance_id="worker-1")
    b = sim.join(instance_id="worker-2")
    sim.settle()
    mine = set(sim.owned[a])
    epoch = sim.group.group_epoch
    sim.leave(a, epoch=-2)  # a restart: leave temporarily
    sim.now += 5
    sim.beat(b)
    a2 = sim.join(instance_id="worker-1")
    assert sim.owned[a2] == mine
    assert sim.group.group_epoch == epoch  # no rebalance
    assert sim.owned[b] == set(range(6)) - mine or len(sim.owned[b]) == 3


def test_static_member_crash_and_restart_fences_the_old_incarnation():
    sim = Sim({"t": 4})
    a = sim.join(instance_id="w1")
    sim.join(instance_id="w2")
    sim.settle()
    mine = set(sim.owned[a])
    a2 = sim.join(instance_id="w1")  # restarted without leaving (SIGKILL)
    assert a2 != a and sim.owned[a2] == mine
    with pytest.raises(UnknownMemberIdError):
        sim.group.check_commit(a, sim.epoch[a])


def test_static_member_that_stays_away_is_removed_after_the_session():
    sim = Sim({"t": 4})
    a = sim.join(instance_id="w1", timeout_ms=1_000)
    b = sim.join(instance_id="w2", timeout_ms=1_000)
    sim.settle()
    sim.leave(a, epoch=-2)
    sim.now += 0.5
    sim.beat(b)
    assert len(sim.owned[b]) == 2  # a's partitions wait for it
    sim.now += 0.6
    sim.beat(b)
    assert sim.group.expire(sim.now, 0) == [a]
    sim.settle()
    assert len(sim.owned[b]) == 4


def test_commit_fencing_by_member_epoch():
    sim = Sim({"t": 4})
    a = sim.join()
    sim.settle()
    sim.group.check_commit(a, sim.epoch[a])
    old = sim.epoch[a]
    sim.join()
    sim.settle()
    assert sim.epoch[a] > old
    with pytest.raises(IllegalGenerationError, match="stale member epoch"):
        sim.group.check_commit(a, old)
    with pytest.raises(UnknownMemberIdError):
        sim.group.check_commit("nobody", 1)


def test_revoking_member_may_commit_with_its_old_epoch_until_it_has_revoked():
    sim = Sim({"t": 4})
    a = sim.join()
    sim.settle()
    old = sim.epoch[a]
    sim.join()
    r = sim.group.heartbeat(  # a learns it must revoke, but has not yet
        member_id=a,
        member_epoch=old,
        now=0,
        now_ms=0,
        partition_counts=sim.counts,
        owned=sorted(sim.owned[a]),
    )
    assert r.member_epoch == old and len(r.assignment) == 2
    sim.group.check_commit(a, old)  # commit before revoking: accepted


def test_partition_count_change_rebalances():
    sim = Sim({"t": 2})
    a, b = sim.join(), sim.join()
    sim.settle()
    epoch = sim.group.group_epoch
    sim.counts["t"] = 6
    sim.settle()
    assert sim.group.group_epoch == epoch + 1
    assert sorted(len(sim.owned[m]) for m in (a, b)) == [3, 3]


def test_bad_requests_are_clear_errors():
    g = Group("g", SETTINGS)
    with pytest.raises(InvalidSessionTimeoutError):
        g.heartbeat(
            member_id="",
            member_epoch=0,
            now=0,
            now_ms=0,
            partition_counts={},
            topics=["t"],
            session_timeout_ms=10,
        )
    with pytest.raises(InvalidRequestError, match="subscribe"):
        g.heartbeat(member_id="", member_epoch=0, now=0, now_ms=0, partition_counts={})
    with pytest.raises(InvalidRequestError, match="assignor"):
        g.heartbeat(
            member_id="",
            member_epoch=0,
            now=0,
            now_ms=0,
            partition_counts={},
            topics=["t"],
            assignor="best",
        )
    r = g.heartbeat(
        member_id="", member_epoch=0, now=0, now_ms=0, partition_counts={"t": 1}, topics=["t"]
    )
    with pytest.raises(IllegalGenerationError):
        g.heartbeat(
            member_id=r.member_id,
            member_epoch=r.member_epoch + 5,
            now=0,
            now_ms=0,
            partition_counts={"t": 1},
        )
    with pytest.raises(InvalidRequestError):
        g.heartbeat(member_id=r.member_id, member_epoch=-7, now=0, now_ms=0, partition_counts={})


@pytest.mark.parametrize("seed", range(25))
def test_random_membership_churn_never_double_assigns_and_converges(seed):
    rng = random.Random(seed)
    sim = Sim({"t": rng.randint(1, 12), "u": rng.randint(0, 5)})
    for _ in range(60):
        op = rng.random()
        live = list(sim.owned)
        if op < 0.25 or not live:
            sim.join(
                topics=rng.choice([("t",), ("t", "u"), ("u",)])
                if rng.random() < 0.2
                else ("t", "u")
            )
        elif op < 0.35:
            sim.leave(rng.choice(live))
        elif op < 0.4:
            victim = rng.choice(live)
            sim.group.members[victim].deadline = -1.0  # its session ran out
            assert sim.group.expire(sim.now, 0) == [victim]
            del sim.owned[victim]
        elif op < 0.45:
            sim.counts["u"] = rng.randint(0, 6)
        else:
            sim.beat(rng.choice(live))
        sim.check()
    sim.settle(rounds=10)
    if sim.owned:
        assert sim.group.state == STABLE
        target = sim.group.target
        assert all(sim.owned[m] == target[m] for m in sim.owned)


# ---------------------------------------------------------------- late (stale) heartbeats


def _hb(group: Group, member: str, epoch: int, owned=(), seq=0, topics=("t",), counts=None, **kw):
    return group.heartbeat(
        member_id=member,
        member_epoch=epoch,
        now=0.0,
        now_ms=0,
        partition_counts=counts or {"t": 4},
        topics=topics,
        owned=sorted(owned),
        **({"request_seq": seq} if seq else {}),
        **kw,
    )


def test_a_late_heartbeat_with_an_older_sequence_number_releases_nothing():
    """A's heartbeat #2 (sent while A owned nothing yet) times out at the client and reaches
    the broker after #3 (which lists what A reads now) and after a rebalance that moves a
    partition of A's away: its stale ``owned`` must not release that partition while A
    still reads it."""
    group = Group("g", SETTINGS)
    a = _hb(group, "", 0, seq=1)
    everything = set(a.assignment)
    assert len(everything) == 4
    # #2 would be: epoch a.member_epoch, owned=() -- sent now, delivered later
    _hb(group, a.member_id, a.member_epoch, owned=everything, seq=3)
    b = _hb(group, "", 0, seq=1)  # a rebalance: two of A's partitions must move to B
    assert group.target[a.member_id] != everything
    late = _hb(group, a.member_id, a.member_epoch, owned=(), seq=2)
    assert group.members[a.member_id].assigned == everything, "stale owned released partitions"
    assert late.assignment <= everything
    assert _hb(group, b.member_id, b.member_epoch, seq=2).assignment == frozenset()
    group.check_invariants()
    # the real (newer) heartbeat revoking the moved partitions releases them
    keep = group.target[a.member_id]
    _hb(group, a.member_id, a.member_epoch, owned=keep, seq=4)
    assert group.members[a.member_id].assigned == set(keep)
    rb = _hb(group, b.member_id, b.member_epoch, seq=3)
    assert rb.assignment == frozenset(everything - keep)
    group.check_invariants()


def test_a_late_heartbeat_without_sequence_numbers_and_an_older_epoch_releases_nothing():
    """Older clients send no request_seq: an older epoch than the member's is then the
    sign of a request overtaken by newer ones (KIP-848), and its owned list is ignored."""
    group = Group("g", SETTINGS)
    a = _hb(group, "", 0)
    _hb(group, a.member_id, a.member_epoch, owned=a.assignment)
    # the topic grows: A moves to the next epoch and takes the new partitions
    ra = _hb(group, a.member_id, a.member_epoch, owned=a.assignment, counts={"t": 6})
    assert ra.member_epoch == group.group_epoch > a.member_epoch and len(ra.assignment) == 6
    held = set(ra.assignment)
    b = _hb(group, "", 0, counts={"t": 6})  # A must give up 3
    assert len(group.target[a.member_id]) == 3
    _hb(group, a.member_id, a.member_epoch, owned=(), counts={"t": 6})  # late, epoch 1
    assert group.members[a.member_id].assigned == held, "older epoch released partitions"
    assert _hb(group, b.member_id, b.member_epoch, counts={"t": 6}).assignment == frozenset()
    group.check_invariants()
    # at its current epoch, the same kind of report releases
    keep = group.target[a.member_id]
    _hb(group, a.member_id, ra.member_epoch, owned=keep, counts={"t": 6})
    assert group.members[a.member_id].assigned == set(keep)
    group.check_invariants()


def test_a_late_heartbeat_does_not_undo_a_newer_subscription_or_refresh_the_session():
    group = Group("g", SETTINGS)
    a = _hb(group, "", 0, seq=1, session_timeout_ms=1_000)
    group.heartbeat(
        member_id=a.member_id,
        member_epoch=a.member_epoch,
        now=0.5,
        now_ms=500,
        partition_counts={"t": 4, "u": 2},
        topics=("t", "u"),
        owned=sorted(a.assignment),
        request_seq=3,
    )
    assert group.members[a.member_id].topics == {"t", "u"}
    deadline = group.members[a.member_id].deadline
    epoch = group.group_epoch
    group.heartbeat(
        member_id=a.member_id,
        member_epoch=a.member_epoch,
        now=0.9,
        now_ms=900,
        partition_counts={"t": 4, "u": 2},
        topics=("t",),
        request_seq=2,
    )
    assert group.members[a.member_id].topics == {"t", "u"}
    assert group.group_epoch == epoch
    assert group.members[a.member_id].deadline == deadline


def test_a_late_copy_of_a_join_changes_nothing():
    group = Group("g", SETTINGS)
    a = _hb(group, "", 0, seq=1)
    member_id = a.member_id
    _hb(group, member_id, a.member_epoch, owned=a.assignment, seq=2)
    before = group.members[member_id]
    again = _hb(group, member_id, 0, seq=1)
    assert group.members[member_id] is before and again.assignment == a.assignment


# ---------------------------------------------------------------- size


def test_a_join_beyond_the_group_max_size_is_refused_but_a_static_rejoin_is_not():
    from logstream.errors import GroupMaxSizeReachedError

    group = Group("g", GroupSettings(min_session_timeout_ms=100, max_size=3))
    ids = [_hb(group, "", 0, instance_id=f"pod-{i}").member_id for i in range(3)]
    with pytest.raises(GroupMaxSizeReachedError, match="group_max_size 3"):
        _hb(group, "", 0)
    assert len(group.members) == 3
    # a restarted static member takes its own place
    r = _hb(group, "", 0, instance_id="pod-1")
    assert r.member_id not in ids and len(group.members) == 3
    group.heartbeat(member_id=ids[0], member_epoch=-1, now=0.0, now_ms=0, partition_counts={"t": 4})
    assert _hb(group, "", 0).member_id in group.members
