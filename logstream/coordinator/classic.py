"""Kafka's classic group protocol (JoinGroup / SyncGroup / Heartbeat / LeaveGroup).

The native groups (group.py) compute assignments on the broker and reconcile them one
partition at a time (KIP-848). Classic Kafka clients instead elect a leader that runs the
*client's* assignor (range, roundrobin, cooperative-sticky) and hands the result back
through the broker as opaque bytes, behind two barriers. The two cannot share one state
machine without overriding the clients' assignors, so a classic group is its own type here,
beside the native ones; both commit through the same offsets table, and the coordinator's
list/describe show both (docs/decisions: "Classic Kafka groups beside the native ones").

States (Kafka's names): Empty -> PreparingRebalance (a member joined, left, changed its
protocols or timed out; every member must rejoin) -> CompletingRebalance (generation
bumped, leader chosen, waiting for the leader's SyncGroup) -> Stable.

- ``join`` returns a Future completed when the rebalance completes: when every known
  member has rejoined, or at the rebalance timeout (members that did not rejoin are
  removed). The leader's answer lists every member's protocol metadata.
- ``sync`` returns a Future completed with the member's assignment once the leader synced.
- ``heartbeat`` answers REBALANCE_IN_PROGRESS while a rebalance waits for rejoins.
- ``expire(now)`` (called periodically) removes members past their session timeout and
  completes rebalances past their deadline.

Thread-safe: one lock over all classic groups (joins are rare). Futures are completed
outside the lock. Errors are logstream errors set on the Futures or raised.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field

from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.errors import (
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    InvalidRequestError,
    InvalidSessionTimeoutError,
    LogstreamError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from logstream.types import TopicPartition

EMPTY = "Empty"
PREPARING = "PreparingRebalance"
COMPLETING = "CompletingRebalance"
STABLE = "Stable"


@dataclass(slots=True)
class ClassicMember:
    member_id: str
    client_id: str
    client_host: str
    instance_id: str | None
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: list[tuple[str, bytes]]
    last_seen: float
    assignment: bytes = b""
    partitions: tuple[TopicPartition, ...] = ()
    join: Future[JoinResult] | None = None
    sync: Future[bytes] | None = None


@dataclass(frozen=True, slots=True)
class JoinResult:
    generation: int
    protocol: str
    leader: str
    member_id: str
    members: tuple[tuple[str, str | None, bytes], ...]  # leader only: (id, instance, metadata)


@dataclass(slots=True)
class ClassicGroup:
    group_id: str
    protocol_type: str = ""
    state: str = EMPTY
    generation: int = 0
    protocol: str = ""
    leader: str = ""
    members: dict[str, ClassicMember] = field(default_factory=dict)
    rebalance_deadline: float = 0.0


class ClassicGroups:
    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        *,
        min_session_timeout_ms: int = 1_000,
        max_session_timeout_ms: int = 300_000,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._groups: dict[str, ClassicGroup] = {}
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms

    # -- queries -------------------------------------------------------------------------

    def get(self, group_id: str) -> ClassicGroup | None:
        with self._lock:
            return self._groups.get(group_id)

    def group_ids(self) -> list[str]:
        with self._lock:
            return sorted(g for g, group in self._groups.items() if group.members)

    def snapshot(self, group_id: str) -> tuple[str, str, str, list[ClassicMember]] | None:
        """(state, protocol type, protocol, members) of a group with members, or None."""
        with self._lock:
            group = self._groups.get(group_id)
            if group is None or not group.members:
                return None
            return group.state, group.protocol_type, group.protocol, list(group.members.values())

    # -- join / sync ---------------------------------------------------------------------

    def join(
        self,
        group_id: str,
        member_id: str,
        *,
        client_id: str,
        client_host: str,
        instance_id: str | None,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
    ) -> Future[JoinResult]:
        if not group_id:
            raise InvalidRequestError("group id must not be empty")
        if not self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms:
            raise InvalidSessionTimeoutError(
                f"session timeout {session_timeout_ms} ms outside "
                f"[{self.min_session_timeout_ms}, {self.max_session_timeout_ms}]"
            )
        if not protocols:
            raise InconsistentGroupProtocolError("a join needs at least one protocol")
        now = self._clock.monotonic()
        done: list[tuple[Future[JoinResult], JoinResult]] = []
        future: Future[JoinResult] = Future()
        with self._lock:
            group = self._groups.setdefault(group_id, ClassicGroup(group_id))
            if group.members and protocol_type != group.protocol_type:
                raise InconsistentGroupProtocolError(
                    f"group {group_id!r} uses protocol type {group.protocol_type!r}"
                )
            names = {name for name, _ in protocols}
            others = [m for m in group.members.values() if m.member_id != member_id]
            if others and not any(
                all(n in {p for p, _ in m.protocols} for m in others) for n in names
            ):
                raise InconsistentGroupProtocolError(
                    f"no protocol of {sorted(names)} is supported by every member"
                )
            member = group.members.get(member_id) if member_id else None
            if member_id and member is None:
                raise UnknownMemberIdError(f"group {group_id!r} has no member {member_id!r}")
            if member is None:
                member = ClassicMember(
                    f"{client_id or 'member'}-{uuid.uuid4()}",
                    client_id,
                    client_host,
                    instance_id,
                    session_timeout_ms,
                    rebalance_timeout_ms,
                    protocols,
                    now,
                )
                group.members[member.member_id] = member
            else:
                member.protocols = protocols
                member.session_timeout_ms = session_timeout_ms
                member.rebalance_timeout_ms = rebalance_timeout_ms
                member.last_seen = now
            group.protocol_type = protocol_type
            if member.join is not None and not member.join.done():
                member.join.set_exception(RebalanceInProgressError("superseded by a newer join"))
            member.join = future
            # Every join starts a rebalance (Kafka skips it for an unchanged follower in a
            # stable group; rebalancing anyway is simpler and only costs a round trip).
            if group.state != PREPARING:
                self._prepare(group, now)
            done = self._maybe_complete(group, now)
        _finish(done)
        return future

    def sync(
        self,
        group_id: str,
        member_id: str,
        generation: int,
        assignments: dict[str, bytes],
        partitions: dict[str, tuple[TopicPartition, ...]] | None = None,
    ) -> Future[bytes]:
        """The member's assignment once the leader synced. The leader passes every member's
        assignment bytes and, for describe and lag, the partitions they name."""
        future: Future[bytes] = Future()
        ready: list[tuple[Future[bytes], bytes]] = []
        with self._lock:
            group, member = self._member(group_id, member_id)
            if generation != group.generation:
                raise IllegalGenerationError(
                    f"generation {generation}; the group is at {group.generation}"
                )
            if group.state == PREPARING:
                raise RebalanceInProgressError(f"group {group_id!r} is rebalancing")
            member.last_seen = self._clock.monotonic()
            if group.state == STABLE:
                future.set_result(member.assignment)
                return future
            member.sync = future
            if member_id == group.leader:
                for m in group.members.values():
                    m.assignment = assignments.get(m.member_id, b"")
                    m.partitions = (partitions or {}).get(m.member_id, ())
                group.state = STABLE
                for m in group.members.values():
                    if m.sync is not None and not m.sync.done():
                        ready.append((m.sync, m.assignment))
                    m.sync = None
        for f, assignment in ready:
            f.set_result(assignment)
        return future

    def heartbeat(self, group_id: str, member_id: str, generation: int) -> None:
        """Raises UnknownMemberIdError, IllegalGenerationError or RebalanceInProgressError."""
        with self._lock:
            group, member = self._member(group_id, member_id)
            member.last_seen = self._clock.monotonic()
            if group.state == PREPARING:
                raise RebalanceInProgressError(f"group {group_id!r} is rebalancing; rejoin")
            if generation != group.generation:
                raise IllegalGenerationError(
                    f"generation {generation}; the group is at {group.generation}"
                )

    def leave(self, group_id: str, member_ids: list[str]) -> dict[str, LogstreamError | None]:
        out: dict[str, LogstreamError | None] = {}
        done: list[tuple[Future[JoinResult], JoinResult]] = []
        with self._lock:
            group = self._groups.get(group_id)
            for member_id in member_ids:
                if group is None or member_id not in group.members:
                    out[member_id] = UnknownMemberIdError(f"no member {member_id!r}")
                    continue
                self._remove(group, member_id)
                out[member_id] = None
            if group is not None and any(e is None for e in out.values()):
                done = self._after_removal(group)
        _finish(done)
        return out

    def check_commit(self, group_id: str, member_id: str, generation: int) -> None:
        """A commit from a member must carry its current generation; a commit without a
        member (generation -1) only to a group with no classic members."""
        with self._lock:
            group = self._groups.get(group_id)
            if not member_id and generation < 0:
                if group is not None and group.members:
                    raise UnknownMemberIdError(f"group {group_id!r} has active members")
                return
            if group is None or member_id not in group.members:
                raise UnknownMemberIdError(f"group {group_id!r} has no member {member_id!r}")
            if generation != group.generation:
                raise IllegalGenerationError(
                    f"generation {generation}; the group is at {group.generation}"
                )
            if group.state == PREPARING:
                raise RebalanceInProgressError(f"group {group_id!r} is rebalancing")
            group.members[member_id].last_seen = self._clock.monotonic()

    def expire(self) -> list[str]:
        """Remove members past their session timeout; complete overdue rebalances.
        Returns the removed member ids."""
        now = self._clock.monotonic()
        removed: list[str] = []
        done: list[tuple[Future[JoinResult], JoinResult]] = []
        with self._lock:
            for group in list(self._groups.values()):
                gone = [
                    m.member_id
                    for m in group.members.values()
                    if now - m.last_seen > m.session_timeout_ms / 1000
                    and (m.join is None or m.join.done())
                ]
                if group.state == PREPARING and now >= group.rebalance_deadline:
                    gone += [
                        m.member_id
                        for m in group.members.values()
                        if (m.join is None or m.join.done()) and m.member_id not in gone
                    ]
                for member_id in gone:
                    self._remove(group, member_id)
                removed += gone
                if gone:
                    done += self._after_removal(group)
                if not group.members and group.state == EMPTY:
                    del self._groups[group.group_id]
        _finish(done)
        return removed

    # -- state machine (lock held) -------------------------------------------------------

    def _member(self, group_id: str, member_id: str) -> tuple[ClassicGroup, ClassicMember]:
        group = self._groups.get(group_id)
        if group is None or member_id not in group.members:
            raise UnknownMemberIdError(f"group {group_id!r} has no member {member_id!r}")
        return group, group.members[member_id]

    def _prepare(self, group: ClassicGroup, now: float) -> None:
        group.state = PREPARING
        timeout = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
        group.rebalance_deadline = now + timeout / 1000
        for m in group.members.values():
            if m.sync is not None and not m.sync.done():
                m.sync.set_exception(RebalanceInProgressError("the group is rebalancing"))
            m.sync = None

    def _remove(self, group: ClassicGroup, member_id: str) -> None:
        member = group.members.pop(member_id)
        for f in (member.join, member.sync):
            if f is not None and not f.done():
                f.set_exception(UnknownMemberIdError(f"member {member_id!r} was removed"))

    def _after_removal(self, group: ClassicGroup) -> list[tuple[Future[JoinResult], JoinResult]]:
        now = self._clock.monotonic()
        if not group.members:
            group.state, group.leader, group.protocol = EMPTY, "", ""
            group.generation += 1
            return []
        if group.state != PREPARING:
            self._prepare(group, now)
        return self._maybe_complete(group, now)

    def _maybe_complete(
        self, group: ClassicGroup, now: float
    ) -> list[tuple[Future[JoinResult], JoinResult]]:
        members = list(group.members.values())
        waiting = [m for m in members if m.join is not None and not m.join.done()]
        if len(waiting) < len(members) and now < group.rebalance_deadline:
            return []
        for m in members:
            if m not in waiting:
                self._remove(group, m.member_id)
        if not waiting:
            group.state = EMPTY
            return []
        group.generation += 1
        if group.leader not in group.members:
            group.leader = waiting[0].member_id
        leader = group.members[group.leader]
        common = [
            name
            for name, _ in leader.protocols
            if all(name in {p for p, _ in m.protocols} for m in waiting)
        ]
        group.protocol = common[0] if common else leader.protocols[0][0]
        group.state = COMPLETING
        everyone = tuple(
            (m.member_id, m.instance_id, dict(m.protocols).get(group.protocol, b""))
            for m in waiting
        )
        out = []
        for m in waiting:
            result = JoinResult(
                group.generation,
                group.protocol,
                group.leader,
                m.member_id,
                everyone if m.member_id == group.leader else (),
            )
            assert m.join is not None
            out.append((m.join, result))
            m.join = None
            m.last_seen = now
        return out


def _finish(done: list[tuple[Future[JoinResult], JoinResult]]) -> None:
    for future, result in done:
        if not future.done():
            future.set_result(result)
