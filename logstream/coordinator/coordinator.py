"""The group coordinator: the broker-side API of consumer groups, one method per RPC.

``GroupCoordinator(log_manager, clock)`` composes the group state machines
(:mod:`logstream.coordinator.group`), the committed-offsets table persisted in
``__consumer_offsets`` (:mod:`logstream.coordinator.offsets`) and read-only access to the
partitions in storage for lag, time lag and offset resets
(:mod:`logstream.coordinator.positions`).

Errors are raised as ``logstream.errors`` classes; the broker's servicer turns them into
response codes. Per-partition failures of a commit are returned, not raised.

Thread safety: every public method may be called from many threads at once (gRPC worker
threads plus the broker's expiry timer). Each group has its own lock
(:class:`~logstream.coordinator.group_table.GroupTable`), held for the whole of a call on
that group (including the append of a commit, so a commit and a rebalance of the same group
never interleave); never two group locks at once.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.coordinator.classic import ClassicGroups
from logstream.coordinator.descriptions import (
    ExpiryReport,
    GroupDescription,
    GroupSummary,
    MemberDescription,
    PartitionLag,
    ResetSpec,
)
from logstream.coordinator.group import (
    EMPTY,
    GroupSettings,
    HeartbeatResult,
)
from logstream.coordinator.group_table import GroupTable
from logstream.coordinator.offsets import (
    COMPACT_MIN_RECORDS,
    DEFAULT_OFFSETS_PARTITIONS,
    OFFSETS_TOPIC,
    CommittedOffset,
    OffsetStore,
)
from logstream.coordinator.positions import partition_lag, reset_target
from logstream.errors import (
    GroupIdNotFoundError,
    InvalidCommitOffsetSizeError,
    InvalidRequestError,
    InvalidTopicError,
    LogstreamError,
    NonEmptyGroupError,
    OffsetOutOfRangeError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from logstream.storage.config import MAX_TOPIC_NAME_LENGTH
from logstream.storage.log import PartitionLog
from logstream.storage.manager import LogManager
from logstream.types import OffsetAndMetadata, TopicPartition

_log = logging.getLogger("logstream.coordinator")
_DAY_MS = 24 * 60 * 60 * 1000
MAX_METADATA_CHARS = 4096
MAX_GROUP_ID_CHARS = 255
MAX_INSTANCE_ID_CHARS = 255
MAX_CLIENT_ID_CHARS = 255
MAX_ASSIGNOR_CHARS = 64
MAX_SUBSCRIBED_TOPICS = 1_000


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    """Group settings of the broker. Times in milliseconds."""

    groups: GroupSettings = field(default_factory=GroupSettings)
    offsets_retention_ms: int = 7 * _DAY_MS
    """Offsets of a group that has been empty for longer than this are deleted."""
    offsets_topic_partitions: int = DEFAULT_OFFSETS_PARTITIONS
    offsets_topic_config: Any = None
    """Passed to ``LogManager.create_topic`` for ``__consumer_offsets`` (None: defaults)."""
    offsets_compact_min_records: int = COMPACT_MIN_RECORDS
    """A checkpoint of ``__consumer_offsets`` is written (by :meth:`GroupCoordinator.expire`)
    once a partition of it has had more than max(this, 4 x live entries) records appended
    since its last checkpoint; the segments below the checkpoint are then deleted."""


class GroupCoordinator:
    """Consumer groups on one broker. See the module docstring for the threading contract."""

    def __init__(
        self,
        log_manager: LogManager,
        clock: Clock = SYSTEM_CLOCK,
        config: CoordinatorConfig | None = None,
    ) -> None:
        self.config = config or CoordinatorConfig()
        self._storage = log_manager
        self._clock = clock
        self.groups = GroupTable(self.config.groups)
        """The live groups with their locks (lock order: see group_table.py)."""
        self.classic = ClassicGroups(
            clock,
            min_session_timeout_ms=self.config.groups.min_session_timeout_ms,
            max_session_timeout_ms=self.config.groups.max_session_timeout_ms,
        )
        """Groups of Kafka clients (classic join/sync protocol; see classic.py)."""
        self.offsets = OffsetStore.open(
            log_manager,
            clock,
            partitions=self.config.offsets_topic_partitions,
            topic_config=self.config.offsets_topic_config,
            compact_min_records=self.config.offsets_compact_min_records,
        )

    # ================================================================== storage access

    def _partition_count(self, topic: str) -> int | None:
        # one dict lookup: a set of every topic name per call made describing a group
        # over 1,000 topics quadratic (80 ms for 2,000 partitions)
        try:
            return len(self._storage.topic(topic).partitions)
        except UnknownTopicOrPartitionError:
            return None

    def _log(self, tp: TopicPartition) -> PartitionLog:
        n = self._partition_count(tp.topic)
        if n is None or tp.topic == OFFSETS_TOPIC:
            raise UnknownTopicOrPartitionError(f"unknown topic {tp.topic!r}")
        if not 0 <= tp.partition < n:
            raise UnknownTopicOrPartitionError(
                f"topic {tp.topic!r} has partitions 0..{n - 1}, not {tp.partition}"
            )
        return self._storage.get_log(tp.topic, tp.partition)

    # ================================================================== groups

    @staticmethod
    def _check_group_id(group_id: str) -> None:
        if not group_id:
            raise InvalidRequestError("group id must not be empty")
        if len(group_id) > MAX_GROUP_ID_CHARS:
            raise InvalidRequestError(f"group id longer than {MAX_GROUP_ID_CHARS} characters")

    def heartbeat(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        *,
        instance_id: str = "",
        topics: Collection[str] = (),
        assignor: str = "",
        session_timeout_ms: int = 0,
        owned: Collection[TopicPartition] = (),
        client_id: str = "",
        request_seq: int = 0,
    ) -> HeartbeatResult | None:
        """Join (``member_epoch`` 0), heartbeat and reconcile, or leave (-1 / -2).

        Returns None for a leave. See :meth:`Group.heartbeat` for the errors and for
        ``request_seq``; InvalidRequestError for identifiers or a subscription beyond the
        limits (MAX_INSTANCE_ID_CHARS, MAX_CLIENT_ID_CHARS, MAX_SUBSCRIBED_TOPICS,
        MAX_TOPIC_NAME_LENGTH), GroupMaxSizeReachedError for a join into a full group."""
        self._check_group_id(group_id)
        _check_limits(instance_id, client_id, assignor, topics)
        for t in topics:
            if t == OFFSETS_TOPIC:
                raise InvalidTopicError(f"{OFFSETS_TOPIC} is internal; it cannot be consumed")
        now, now_ms = self._clock.monotonic(), self._clock.now_ms()
        with self.groups.locked(group_id, create=member_epoch == 0) as group:
            if group is None:
                raise UnknownMemberIdError(
                    f"group {group_id!r} has no member {member_id!r}: rejoin with member_epoch 0"
                )
            wanted = set(topics) | group.subscribed_topics()
            counts = {t: self._partition_count(t) or 0 for t in wanted}
            return group.heartbeat(
                member_id=member_id,
                member_epoch=member_epoch,
                now=now,
                now_ms=now_ms,
                partition_counts=counts,
                instance_id=instance_id,
                topics=topics,
                assignor=assignor,
                session_timeout_ms=session_timeout_ms,
                owned=owned,
                client_id=client_id,
                request_seq=request_seq,
            )

    # ================================================================== offsets

    def commit(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        offsets: Mapping[TopicPartition, OffsetAndMetadata | int],
    ) -> dict[TopicPartition, LogstreamError | None]:
        """Commit ``offsets`` (the next offset to consume per partition).

        A member commits with its id and current epoch; a commit without a member (empty id,
        epoch -1) is allowed only while the group has no members (standalone consumers,
        admin tools). Raises UnknownMemberIdError / IllegalGenerationError (fenced, stale
        epoch) for the whole request; returns a per-partition error (or None) otherwise:
        IllegalGenerationError (a member commits a partition not assigned to it: revoked and
        released, or never its own), UnknownTopicOrPartitionError, OffsetOutOfRangeError
        (negative or past the log end), InvalidCommitOffsetSizeError (metadata too long).
        """
        self._check_group_id(group_id)
        with self.groups.locked(group_id, create=True) as group:
            assert group is not None
            as_member = bool(member_id) or member_epoch != -1
            if as_member:
                group.check_commit(member_id, member_epoch)
            elif group.members:
                raise UnknownMemberIdError(
                    f"group {group_id!r} has {len(group.members)} active members; only they "
                    "may commit (stop them, or commit as a member)"
                )
            results: dict[TopicPartition, LogstreamError | None] = {}
            accepted: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp, om in offsets.items():
                tp = TopicPartition(tp.topic, int(tp.partition))
                om = om if isinstance(om, OffsetAndMetadata) else OffsetAndMetadata(int(om))
                try:
                    self._validate_commit(tp, om)
                    if as_member:
                        group.check_commit_partition(member_id, tp)
                except LogstreamError as exc:
                    results[tp] = exc
                    continue
                accepted[tp] = om
                results[tp] = None
            if accepted:
                self.offsets.commit(group_id, accepted)
            if not group.members and group.empty_since_ms is None:
                group.empty_since_ms = self._clock.now_ms()
            return results

    def _validate_commit(self, tp: TopicPartition, om: OffsetAndMetadata) -> None:
        log = self._log(tp)
        if om.offset < 0:
            raise OffsetOutOfRangeError(f"cannot commit the negative offset {om.offset} for {tp}")
        end = int(log.log_end_offset)
        if om.offset > end:
            raise OffsetOutOfRangeError(
                f"cannot commit offset {om.offset} for {tp}: the log ends at {end}",
                earliest=int(log.log_start_offset),
                latest=end,
            )
        if len(om.metadata) > MAX_METADATA_CHARS:
            raise InvalidCommitOffsetSizeError(
                f"commit metadata of {len(om.metadata)} characters; the limit is "
                f"{MAX_METADATA_CHARS}"
            )

    def fetch_offsets(
        self, group_id: str, partitions: Collection[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset | None]:
        """Committed offsets of ``group_id``: of ``partitions`` (None for nothing committed),
        or everything it has committed when ``partitions`` is None or empty. A group that
        never committed has no offsets (this is not an error: it is how a new group starts).
        """
        self._check_group_id(group_id)
        table = self.offsets.get(group_id)
        if not partitions:
            return dict(sorted(table.items()))
        return {tp: table.get(TopicPartition(tp.topic, int(tp.partition))) for tp in partitions}

    # ================================================================== admin

    def _known_group_ids(self) -> list[str]:
        ids = self.groups.ids()
        ids.update(self.offsets.groups())
        ids.update(self.classic.group_ids())
        return sorted(ids)

    def list_groups(self) -> list[GroupSummary]:
        """Every group with members or committed offsets."""
        out: list[GroupSummary] = []
        for group_id in self._known_group_ids():
            classic = self.classic.snapshot(group_id)
            if classic is not None:
                out.append(GroupSummary(group_id, classic[0], len(classic[3])))
                continue
            with self.groups.locked(group_id) as group:
                if group is None or group.dead:
                    if self.offsets.get(group_id):
                        out.append(GroupSummary(group_id, EMPTY, 0))
                    continue
                if not group.members and not self.offsets.get(group_id):
                    continue
                out.append(GroupSummary(group_id, group.state, len(group.members)))
        return out

    def describe_group(self, group_id: str) -> GroupDescription:
        """State, members, assignment and per-partition committed offset, end, lag, time lag.

        Raises GroupIdNotFoundError for a group without members and without offsets."""
        self._check_group_id(group_id)
        now_ms = self._clock.now_ms()
        with self.groups.locked(group_id) as group:
            committed = self.offsets.get(group_id)
            classic = self.classic.snapshot(group_id)
            if classic is not None and (group is None or not group.members):
                return self._describe_classic(group_id, classic, committed, now_ms)
            if (group is None or not group.members) and not committed:
                raise GroupIdNotFoundError(f"no group {group_id!r} (no members, no offsets)")
            members: list[MemberDescription] = []
            owner: dict[TopicPartition, str] = {}
            tps: set[TopicPartition] = set(committed)
            state, epoch, assignor = EMPTY, 0, ""
            if group is not None:
                state, epoch, assignor = group.state, group.group_epoch, group.assignor
                owner = dict(group.owner)
                for m in sorted(group.members.values(), key=lambda m: m.member_id):
                    members.append(
                        MemberDescription(
                            m.member_id,
                            m.instance_id,
                            m.client_id,
                            m.member_epoch,
                            tuple(sorted(m.assigned)),
                            tuple(sorted(m.topics)),
                        )
                    )
                for t, n in group.partition_counts.items():
                    tps.update(TopicPartition(t, p) for p in range(n))
            # Every partition of a topic the group committed in, also those it never committed
            # (its lag counts from the log start): an empty group's backlog is not hidden.
            for t in {tp.topic for tp in committed}:
                tps.update(TopicPartition(t, p) for p in range(self._partition_count(t) or 0))
            lags = [
                self._lag(tp, committed.get(tp), owner.get(tp, ""), now_ms) for tp in sorted(tps)
            ]
            return GroupDescription(
                group_id, state, epoch, assignor, tuple(members), tuple(x for x in lags if x)
            )

    def _describe_classic(
        self,
        group_id: str,
        classic: tuple[str, str, str, list[Any]],
        committed: Mapping[TopicPartition, CommittedOffset],
        now_ms: int,
    ) -> GroupDescription:
        state, _, protocol, members = classic
        group = self.classic.get(group_id)
        owner = {tp: m.member_id for m in members for tp in m.partitions}
        tps = set(committed) | set(owner)
        lags = [self._lag(tp, committed.get(tp), owner.get(tp, ""), now_ms) for tp in sorted(tps)]
        described = tuple(
            MemberDescription(
                m.member_id,
                m.instance_id or "",
                m.client_id,
                group.generation if group is not None else 0,
                tuple(sorted(m.partitions)),
                tuple(sorted({tp.topic for tp in m.partitions})),
            )
            for m in sorted(members, key=lambda m: m.member_id)
        )
        return GroupDescription(
            group_id,
            state,
            group.generation if group is not None else 0,
            f"kafka:{protocol}",
            described,
            tuple(x for x in lags if x),
        )

    def _lag(
        self, tp: TopicPartition, committed: CommittedOffset | None, member_id: str, now_ms: int
    ) -> PartitionLag | None:
        try:
            log = self._log(tp)
        except UnknownTopicOrPartitionError:
            return None  # deleted since: nothing to measure
        return partition_lag(log, tp, committed, member_id, now_ms)

    def delete_group(self, group_id: str) -> None:
        """Delete an empty group and its offsets. GroupIdNotFoundError, NonEmptyGroupError."""
        self._check_group_id(group_id)
        # Under the group lock also for an offsets-only group: a consumer joining and
        # committing meanwhile waits, and finds the group deleted (not half-deleted).
        with self.groups.locked_admin(group_id) as (group, known):
            if group.members:
                raise NonEmptyGroupError(
                    f"group {group_id!r} has {len(group.members)} active members; stop them first"
                )
            has_offsets = bool(self.offsets.get(group_id))
            if not has_offsets and not known:
                raise GroupIdNotFoundError(f"no group {group_id!r}")
            if has_offsets:
                self.offsets.delete_group(group_id)
            self.groups.drop(group)

    def reset_offsets(
        self,
        group_id: str,
        topic: str,
        partitions: Collection[int] | None,
        target: ResetSpec,
        *,
        execute: bool = False,
    ) -> dict[TopicPartition, int]:
        """Plan (and with ``execute`` apply) new committed offsets for an inactive group.

        ``partitions`` None or empty means every partition of ``topic``. New offsets are
        clamped to [log start, log end]; ``shift`` moves from the committed offset (from the
        log start where nothing is committed); ``timestamp`` picks the first record at or
        after the time (the log end if there is none). Raises GroupIdNotFoundError,
        NonEmptyGroupError (members are active), UnknownTopicOrPartitionError.
        """
        self._check_group_id(group_id)
        # Under the group lock also for an offsets-only group: a standalone commit racing a
        # --shift-by lands before the plan reads the committed offsets or after it is applied,
        # never in between (where the reset would overwrite it with a stale base).
        with self.groups.locked_admin(group_id) as (group, known):
            committed = self.offsets.get(group_id)
            if group.members:
                raise NonEmptyGroupError(
                    f"group {group_id!r} is active ({len(group.members)} members); offsets can "
                    "only be reset while no consumer of the group runs"
                )
            if not known and not committed:
                raise GroupIdNotFoundError(f"no group {group_id!r}")
            n = self._partition_count(topic)
            if n is None or topic == OFFSETS_TOPIC:
                raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
            plist = sorted(set(partitions)) if partitions else list(range(n))
            plan: dict[TopicPartition, int] = {}
            for p in plist:
                tp = TopicPartition(topic, int(p))
                log = self._log(tp)
                plan[tp] = reset_target(log, committed.get(tp), target)
            if execute and plan:
                self.offsets.commit(group_id, {tp: OffsetAndMetadata(o) for tp, o in plan.items()})
            return plan

    # ================================================================== timers

    def expire(self) -> ExpiryReport:
        """Fence members past their session timeout, and delete the offsets of groups that
        have been empty for longer than ``offsets_retention_ms``; checkpoint
        ``__consumer_offsets`` when enough records accumulated (see ``offsets.py``). Call it
        periodically (the broker does, a few times per second)."""
        now, now_ms = self._clock.monotonic(), self._clock.now_ms()
        fenced: dict[str, list[str]] = {}
        expired: list[str] = []
        self.classic.expire()
        retention = self.config.offsets_retention_ms
        for group_id in self._known_group_ids():
            known = group_id in self.groups
            # Always under the group lock, also for a group that exists only as stored
            # offsets (a Group is created for the moment): a commit to it holds the same lock,
            # so it lands either before the decision (and counts) or after the deletion.
            with self.groups.locked(group_id, create=True) as group:
                assert group is not None
                pristine = not known and not group.members and group.group_epoch == 0
                gone = group.expire(now, now_ms)
                if gone:
                    fenced[group_id] = gone
                if group.members:
                    continue
                last = self.offsets.last_commit_ms(group_id)
                if retention >= 0:
                    since = max(group.empty_since_ms or 0, last or 0)
                    if last is not None and now_ms - since > retention:
                        self.offsets.delete_group(group_id)
                        expired.append(group_id)
                if pristine or last is None or group_id in expired:
                    self.groups.drop(group)
        try:
            self.offsets.maybe_compact()
        except LogstreamError:
            # A storage error (disk full, failed partition): nothing was deleted, the
            # records are all still there; the next timer tick tries again.
            _log.exception("checkpoint of %s failed", OFFSETS_TOPIC)
        return ExpiryReport(fenced, expired)


def _check_limits(instance_id: str, client_id: str, assignor: str, topics: Collection[str]) -> None:
    """Bound what one member may make the broker store (per member, for its whole life)."""
    if len(instance_id) > MAX_INSTANCE_ID_CHARS:
        raise InvalidRequestError(
            f"instance id of {len(instance_id)} characters; the limit is {MAX_INSTANCE_ID_CHARS}"
        )
    if len(client_id) > MAX_CLIENT_ID_CHARS:
        raise InvalidRequestError(
            f"client id of {len(client_id)} characters; the limit is {MAX_CLIENT_ID_CHARS}"
        )
    if len(assignor) > MAX_ASSIGNOR_CHARS:
        raise InvalidRequestError(
            f"assignor name of {len(assignor)} characters; the limit is {MAX_ASSIGNOR_CHARS}"
        )
    if len(topics) > MAX_SUBSCRIBED_TOPICS:
        raise InvalidRequestError(
            f"a subscription of {len(topics)} topics; the limit is {MAX_SUBSCRIBED_TOPICS}"
        )
    for t in topics:
        if not t or len(t) > MAX_TOPIC_NAME_LENGTH:
            raise InvalidRequestError(
                f"subscribed topic name of {len(t)} characters; names have 1 to "
                f"{MAX_TOPIC_NAME_LENGTH}"
            )
