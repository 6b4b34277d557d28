"""One consumer group: members, epochs, the target assignment and its incremental reconciliation.

The protocol follows Kafka's KIP-848 ("the next generation of the consumer rebalance
protocol"), simplified for one broker:

- **Group epoch.** Every change of membership (join, leave, fenced by timeout), of a member's
  subscription or assignor, or of the partition count of a subscribed topic bumps the group
  epoch and recomputes the **target assignment** at once, on the broker, with the group's
  assignor (sticky by default). Nobody stops consuming for this.
- **Member epoch and current assignment.** Each member has the set of partitions it may own
  now (``assigned``) and an epoch. A member whose epoch is behind the group epoch reconciles
  on its heartbeats:

  1. *revoke*: partitions it owns that are not in its target are withheld from the
     assignment the broker answers. The member stops fetching them, commits, and reports them
     no longer ``owned`` on the next heartbeat; only then are they released. While revoking, the
     member stays at its old epoch, so its commits (made before revoking) are accepted.
  2. *advance*: once it owns nothing outside its target, the member moves to the group epoch.
  3. *acquire*: each partition of its target that no other member holds is added to its
     assignment at once; partitions still held by their previous owner are added on a later
     heartbeat, after that owner released them (or was fenced). These do not change the epoch.

  Hence the invariant: **a partition is in at most one member's assignment** at any moment
  (``Group.owner`` maps each held partition to its member), and members whose partitions do
  not move keep consuming through the whole rebalance.
- **Heartbeat cadence.** The answer carries ``heartbeat_interval_ms``: the normal interval,
  or a short one while the member has something to revoke or is waiting for a partition, so
  a rebalance completes in a few round trips instead of a few heartbeat intervals.
- **Sessions.** A member that does not heartbeat for its ``session_timeout_ms`` is fenced:
  removed, its partitions released immediately, the group epoch bumped.
- **Static membership.** A member with an ``instance_id`` that leaves temporarily (epoch -2)
  keeps its place and partitions until its session times out. A join with the same
  ``instance_id`` within that time takes over the old member's assignment and epoch under a
  new member id, without a rebalance; the old member id is fenced. The same happens when a
  static member crashes and restarts before its session expires.

Group states (for describe/list): ``Empty`` (no members), ``Reconciling`` (some member is
behind the group epoch or waiting for partitions), ``Stable``, ``Dead`` (deleted).

Thread safety: a ``Group`` is not thread-safe; the caller holds ``group.lock`` (the
coordinator does) for every method call and attribute access.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from logstream.coordinator.assignors import DEFAULT_ASSIGNOR, get_assignor
from logstream.errors import (
    GroupMaxSizeReachedError,
    IllegalGenerationError,
    InvalidRequestError,
    InvalidSessionTimeoutError,
    UnknownMemberIdError,
)
from logstream.types import TopicPartition

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
TEMPORARY_LEAVE_EPOCH = -2

EMPTY = "Empty"
RECONCILING = "Reconciling"
STABLE = "Stable"
DEAD = "Dead"


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """Broker-wide group limits. Times in milliseconds."""

    min_session_timeout_ms: int = 1_000
    max_session_timeout_ms: int = 300_000
    default_session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    reconcile_heartbeat_interval_ms: int = 50
    """The interval answered while a member has partitions to revoke or to wait for."""
    max_size: int = 1_000
    """Members per group; a join beyond it fails with GroupMaxSizeReachedError."""


@dataclass(slots=True)
class Member:
    """One member as the broker sees it (mutated under the group lock)."""

    member_id: str
    instance_id: str
    client_id: str
    topics: frozenset[str]
    assignor: str
    session_timeout_ms: int
    deadline: float  # monotonic seconds: fenced when now passes it
    member_epoch: int = 0
    assigned: set[TopicPartition] = field(default_factory=set)
    last_sent: frozenset[TopicPartition] | None = None
    left_temporarily: bool = False
    last_seq: int = 0  # the highest request_seq processed (0: the client sends none)


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    """What a heartbeat answers (mirrors ``HeartbeatResponse``)."""

    member_id: str
    member_epoch: int
    heartbeat_interval_ms: int
    assignment: frozenset[TopicPartition]
    assignment_changed: bool


class Group:
    """The state of one consumer group. Not thread-safe: callers hold ``self.lock``."""

    def __init__(self, group_id: str, settings: GroupSettings | None = None) -> None:
        self.group_id = group_id
        self.settings = settings or GroupSettings()
        self.lock = threading.RLock()
        self.group_epoch = 0
        self.members: dict[str, Member] = {}
        self.target: dict[str, frozenset[TopicPartition]] = {}
        self.owner: dict[TopicPartition, str] = {}
        self.partition_counts: dict[str, int] = {}
        self.assignor = DEFAULT_ASSIGNOR
        self.dead = False
        self.empty_since_ms: int | None = None  # wall time the group last became empty
        self._counts_hint: Mapping[str, int] | None = None

    # ------------------------------------------------------------------ queries

    @property
    def state(self) -> str:
        if self.dead:
            return DEAD
        if not self.members:
            return EMPTY
        for m in self.members.values():
            if m.member_epoch != self.group_epoch or frozenset(m.assigned) != self.target.get(
                m.member_id
            ):
                return RECONCILING
        return STABLE

    def subscribed_topics(self) -> set[str]:
        return {t for m in self.members.values() for t in m.topics}

    def by_instance(self, instance_id: str) -> Member | None:
        if not instance_id:
            return None
        for m in self.members.values():
            if m.instance_id == instance_id:
                return m
        return None

    def check_invariants(self) -> None:
        """Assert that every held partition has exactly one holder (used by tests)."""
        seen: dict[TopicPartition, str] = {}
        for m in self.members.values():
            for tp in m.assigned:
                assert tp not in seen, f"{tp} held by {seen[tp]} and {m.member_id}"
                seen[tp] = m.member_id
        assert seen == self.owner, (seen, self.owner)

    # ------------------------------------------------------------------ the heartbeat

    def heartbeat(
        self,
        *,
        member_id: str,
        member_epoch: int,
        now: float,
        now_ms: int,
        partition_counts: Mapping[str, int],
        instance_id: str = "",
        topics: Collection[str] = (),
        assignor: str = "",
        session_timeout_ms: int = 0,
        owned: Collection[TopicPartition] = (),
        client_id: str = "",
        request_seq: int = 0,
    ) -> HeartbeatResult | None:
        """Join (epoch 0), heartbeat (current epoch) or leave (-1, or -2 for a static member).

        ``partition_counts`` gives the current partition count of (at least) the topics the
        group subscribes to, after this request. Returns None for a leave.

        ``request_seq`` (> 0) numbers the member's heartbeats in the order it sent them. A
        heartbeat at or below the highest number processed for the member is *stale*: its
        client gave up waiting (timeout) and sent newer ones, and it arrived late. It changes
        nothing (no release of partitions it does not list, no subscription change, no
        session refresh) and is answered with the member's current state. Without a
        sequence number (0, older clients), ``owned`` releases partitions only when the
        heartbeat carries the member's current epoch: an older epoch may come from a
        request overtaken by newer ones, and its ``owned`` may lack a partition the member
        took on since (KIP-848 accepts an older epoch only for what it cannot harm).

        Raises UnknownMemberIdError (fenced or never joined: rejoin with epoch 0),
        IllegalGenerationError (an epoch the broker never gave this member),
        GroupMaxSizeReachedError, InvalidSessionTimeoutError, InvalidRequestError.
        """
        self._counts_hint = partition_counts
        trust_owned = True
        if member_epoch == JOIN_EPOCH:
            repeated = self.members.get(member_id) if member_id else None
            if repeated is not None and 0 < request_seq <= repeated.last_seq:
                return self._answer(repeated, record=False)  # a late copy of a join
            member = self._join(
                member_id, instance_id, client_id, topics, assignor, session_timeout_ms, now
            )
            member.last_seq = max(request_seq, 0)
        elif member_epoch in (LEAVE_EPOCH, TEMPORARY_LEAVE_EPOCH):
            self._leave(member_id, member_epoch, now, now_ms)
            return None
        elif member_epoch > 0:
            member = self._known(member_id)
            if member_epoch > member.member_epoch:
                raise IllegalGenerationError(
                    f"member {member_id} sent epoch {member_epoch}, its epoch is "
                    f"{member.member_epoch}"
                )
            if request_seq > 0:
                if request_seq <= member.last_seq:
                    return self._answer(member, record=False)
                member.last_seq = request_seq
            else:
                trust_owned = member_epoch == member.member_epoch
            member.deadline = now + member.session_timeout_ms / 1000.0
            member.left_temporarily = False
            changed = False
            if topics and frozenset(topics) != member.topics:
                member.topics = frozenset(topics)
                changed = True
            if assignor and assignor != member.assignor:
                get_assignor(assignor)
                member.assignor = assignor
                changed = True
            if changed:
                self._bump()
        else:
            raise InvalidRequestError(f"invalid member epoch {member_epoch}")

        counts = {t: partition_counts.get(t, 0) for t in self.subscribed_topics()}
        if counts != self.partition_counts:
            self._bump()
        if trust_owned:
            self._release_revoked(member, set(owned))
        self._reconcile(member)
        return self._answer(member)

    # ------------------------------------------------------------------ membership changes

    def _join(
        self,
        member_id: str,
        instance_id: str,
        client_id: str,
        topics: Collection[str],
        assignor: str,
        session_timeout_ms: int,
        now: float,
    ) -> Member:
        s = self.settings
        timeout = session_timeout_ms or s.default_session_timeout_ms
        if not s.min_session_timeout_ms <= timeout <= s.max_session_timeout_ms:
            raise InvalidSessionTimeoutError(
                f"session_timeout_ms {timeout} is outside "
                f"[{s.min_session_timeout_ms}, {s.max_session_timeout_ms}]"
            )
        if not topics:
            raise InvalidRequestError("a joining member must subscribe to at least one topic")
        get_assignor(assignor)
        deadline = now + timeout / 1000.0
        previous = self.by_instance(instance_id)
        if member_id and member_id in self.members:
            # A repeated join (the first answer was lost): start over under the same id.
            previous = self.members[member_id]
        new_id = member_id or uuid.uuid4().hex
        if previous is not None and previous.topics == frozenset(topics):
            # Static rejoin (or repeated join): take over place, epoch and partitions.
            member = Member(
                member_id=new_id,
                instance_id=instance_id,
                client_id=client_id,
                topics=previous.topics,
                assignor=assignor or previous.assignor,
                session_timeout_ms=timeout,
                deadline=deadline,
                member_epoch=previous.member_epoch,
                assigned=set(previous.assigned),
            )
            del self.members[previous.member_id]
            self.members[new_id] = member
            self.target[new_id] = self.target.pop(previous.member_id, frozenset())
            for tp in member.assigned:
                self.owner[tp] = new_id
            self.empty_since_ms = None
            return member
        if previous is not None:
            # Same instance, different subscription: the old incarnation is fenced.
            self._remove(previous.member_id)
        elif len(self.members) >= s.max_size:
            raise GroupMaxSizeReachedError(
                f"group {self.group_id!r} has {len(self.members)} members, the broker's limit "
                f"(group_max_size {s.max_size}): this consumer cannot join"
            )
        member = Member(
            member_id=new_id,
            instance_id=instance_id,
            client_id=client_id,
            topics=frozenset(topics),
            assignor=assignor or DEFAULT_ASSIGNOR,
            session_timeout_ms=timeout,
            deadline=deadline,
        )
        self.members[new_id] = member
        self.empty_since_ms = None
        self._bump()
        return member

    def _leave(self, member_id: str, epoch: int, now: float, now_ms: int) -> None:
        member = self._known(member_id)
        if epoch == TEMPORARY_LEAVE_EPOCH and member.instance_id:
            # Static member: keep its place until the session expires.
            member.left_temporarily = True
            return
        self._remove(member_id)
        self._bump()
        if not self.members:
            self.empty_since_ms = now_ms

    def expire(self, now: float, now_ms: int) -> list[str]:
        """Fence every member whose session deadline has passed; returns their ids."""
        self._counts_hint = None
        gone = [m.member_id for m in self.members.values() if now > m.deadline]
        for member_id in gone:
            self._remove(member_id)
        if gone:
            self._bump()
            if not self.members:
                self.empty_since_ms = now_ms
        return gone

    def _remove(self, member_id: str) -> None:
        member = self.members.pop(member_id)
        self.target.pop(member_id, None)
        for tp in member.assigned:
            if self.owner.get(tp) == member_id:
                del self.owner[tp]

    def _known(self, member_id: str) -> Member:
        member = self.members.get(member_id)
        if member is None:
            raise UnknownMemberIdError(
                f"member {member_id!r} is not in group {self.group_id!r} (fenced after a session "
                "timeout, or never joined): rejoin with member_epoch 0"
            )
        return member

    # ------------------------------------------------------------------ assignment

    def _bump(self) -> None:
        """New group epoch and a new target assignment computed from the last target.

        Partition counts come from the current heartbeat when there is one, else from the
        last snapshot (expiry by the timer)."""
        self.group_epoch += 1
        counts = self._counts_hint if self._counts_hint is not None else self.partition_counts
        self.partition_counts = {t: counts.get(t, 0) for t in self.subscribed_topics()}
        if self.members:
            # The group's assignor is the one most members ask for (ties: alphabetical).
            votes: dict[str, int] = {}
            for m in self.members.values():
                votes[m.assignor] = votes.get(m.assignor, 0) + 1
            self.assignor = min(votes, key=lambda a: (-votes[a], a))
        assign = get_assignor(self.assignor)
        subs = {m.member_id: m.topics for m in self.members.values()}
        self.target = dict(assign(subs, self.partition_counts, self.target))

    def _release_revoked(self, member: Member, owned: set[TopicPartition]) -> None:
        """Partitions the member was asked to give up and no longer reports owning are free."""
        target = self.target.get(member.member_id, frozenset())
        for tp in list(member.assigned):
            if tp not in target and tp not in owned:
                member.assigned.discard(tp)
                if self.owner.get(tp) == member.member_id:
                    del self.owner[tp]

    def _reconcile(self, member: Member) -> None:
        target = self.target.get(member.member_id, frozenset())
        if member.member_epoch != self.group_epoch and member.assigned <= target:
            member.member_epoch = self.group_epoch
        if member.member_epoch == self.group_epoch:
            for tp in sorted(target - member.assigned):
                if tp not in self.owner:
                    self.owner[tp] = member.member_id
                    member.assigned.add(tp)

    def _answer(self, member: Member, *, record: bool = True) -> HeartbeatResult:
        target = self.target.get(member.member_id, frozenset())
        allowed = frozenset(member.assigned & target)
        changed = allowed != member.last_sent
        if record:
            member.last_sent = allowed
        busy = member.assigned != target
        interval = (
            self.settings.reconcile_heartbeat_interval_ms
            if busy
            else min(self.settings.heartbeat_interval_ms, member.session_timeout_ms // 3)
        )
        return HeartbeatResult(member.member_id, member.member_epoch, interval, allowed, changed)

    # ------------------------------------------------------------------ fencing of commits

    def check_commit(self, member_id: str, member_epoch: int) -> None:
        """Raise unless ``member_id`` at ``member_epoch`` may commit now.

        A commit must carry the member's current epoch: an older epoch means the committer
        has not seen (or has not finished) the latest reconciliation, e.g. a zombie paused
        for longer than its session timeout and then replaced.
        """
        member = self._known(member_id)
        if member_epoch != member.member_epoch:
            raise IllegalGenerationError(
                f"stale member epoch {member_epoch} for member {member_id} of group "
                f"{self.group_id!r}: its epoch is {member.member_epoch}"
            )

    def check_commit_partition(self, member_id: str, tp: TopicPartition) -> None:
        """Raise IllegalGenerationError unless ``tp`` is held by ``member_id`` now.

        Call after :meth:`check_commit`. A partition being revoked is still held until the
        member reports it released, so the commit made while revoking is accepted; after
        that the partition may belong to another member, whose progress a late commit (e.g.
        a ``commit_async`` still in flight) must not overwrite, even though the committer's
        epoch is current.
        """
        if self.owner.get(tp) != member_id:
            raise IllegalGenerationError(
                f"{tp} is not assigned to member {member_id} of group {self.group_id!r} "
                "(revoked, or never assigned): its commit is refused"
            )
