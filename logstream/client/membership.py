"""Group membership for :class:`~logstream.client.Consumer`: heartbeats, reconciliation,
commits.

Two threads share the work, as in Kafka's consumer:

- The **heartbeat thread** (``logstream-heartbeat``) talks to the coordinator only: it joins
  (member epoch 0), heartbeats every ``heartbeat_interval_ms`` the broker asks for, reports
  the partitions the consumer currently owns, and records the broker's target assignment.
  It never calls user code, so a slow ``handle(record)`` never misses a heartbeat and
  processing time alone never triggers a rebalance.
- The **application thread** applies changes inside ``poll()`` (and iteration), at a moment
  when every record returned before has been processed: partitions to give up are revoked
  (``on_revoke(partitions)`` runs, then with auto-commit their positions are committed, then
  the consumer stops fetching them and the heartbeat thread reports them released at once);
  new partitions start at their committed offsets (``auto_offset_reset`` where none), then
  ``on_assign(partitions)`` runs. Auto-commit of all positions also happens here, every
  ``auto_commit_interval_ms``, and in ``close()``.

Delivery: positions are committed only after the records before them were returned and the
application asked for more (or closed), so a crash re-delivers at most what was returned
since the last commit (**at-least-once**).

Polling bound (as in Kafka): if the application does not poll for ``max_poll_interval_ms``
the heartbeat thread leaves the group on its behalf (a warning names the partitions it gives
up), so a hung worker cannot hold its partitions forever: the broker moves them to the other
members at once. A static member (``instance_id``) leaves temporarily, so its partitions move
when its session times out. The partitions are then *lost* for this consumer: the next poll
drops them without a commit (``on_revoke`` runs), logs that it rejoins, and the member joins
again as a new member.

Fencing: if the broker no longer knows the member (session expired, broker restarted), the
partitions are *lost*: they are dropped at the next poll without a commit (``on_revoke`` still
runs, so the application can discard state), and the member joins again.

Thread safety: the public methods of :class:`GroupMembership` are called by the consumer
(application thread) and the heartbeat thread; the membership's own fields (member id and
epoch, target assignment) are guarded by ``self._lock``. What the consumer reads (assignment,
positions) belongs to the :class:`~logstream.client.subscription.SubscriptionState`, reached
only through its methods, under its own lock; the two locks are never held together.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from logstream import errors
from logstream.client import transport as tr
from logstream.client.commits import OffsetCommitter, tp_messages
from logstream.client.subscription import SubscriptionState
from logstream.errors import CommitFailedError
from logstream.protocol import group_pb2
from logstream.types import GroupMetadata, OffsetAndMetadata, TopicPartition

__all__ = ["CommitFailedError", "GroupMembership"]

log = logging.getLogger("logstream.client.group")

PartitionsCallback = Callable[[set[TopicPartition]], None]


def run_callback(
    cb: PartitionsCallback | None, tps: set[TopicPartition], name: str, group_id: str
) -> None:
    """Run the application's ``on_revoke``/``on_assign`` with a copy of ``tps``; an exception
    it raises is logged, and the rebalance goes on."""
    if cb is None:
        return
    try:
        cb(set(tps))
    except Exception:
        log.exception("%s callback of group %s raised; continuing", name, group_id)


class GroupMembership:
    """Membership of one consumer in one group. See the module docstring."""

    def __init__(
        self,
        state: SubscriptionState,
        transport: tr.TransportLike,
        group_id: str,
        *,
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5_000,
        session_timeout_ms: int = 10_000,
        max_poll_interval_ms: int = 300_000,
        instance_id: str = "",
        assignor: str = "",
        client_id: str = "",
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        request_timeout_s: float = 30.0,
    ) -> None:
        self.state = state
        self.transport = transport
        self.group_id = group_id
        self.auto_commit = enable_auto_commit
        self.auto_commit_interval = auto_commit_interval_ms / 1000.0
        self.session_timeout_ms = session_timeout_ms
        self.max_poll_interval = max_poll_interval_ms / 1000.0
        self.instance_id = instance_id
        self.assignor = assignor
        self.client_id = client_id
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.timeout = request_timeout_s

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self.topics: list[str] = []
        self.member_id = ""
        self.member_epoch = -1  # -1 while not a member: commits go in as a standalone client
        self._target: set[TopicPartition] = set()
        self._target_version = 0
        self._applied_version = 0
        # The target the application thread is applying right now (fetching committed
        # offsets, then assigning): reported owned until the consumer's assignment has it.
        self._applying: set[TopicPartition] = set()
        self._seq = 0  # request_seq of the last heartbeat sent (numbers them in order)
        self._lost = False
        self._beat_now = False
        self._closed = False
        self._last_poll = time.monotonic()
        # Set by the heartbeat thread when it left the group because poll was not called in
        # max_poll_interval_ms; cleared by the next poll, which rejoins.
        self._left_idle = False
        self._last_commit = time.monotonic()
        # The group's committed offsets (Consumer.commit* and committed() call it directly).
        self.commits = OffsetCommitter(
            state, transport, group_id, self._identity, request_timeout_s=request_timeout_s
        )
        self._thread: threading.Thread | None = None
        self.rebalances = 0
        self.last_error: BaseException | None = None
        # A refusal that retrying cannot cure (the group id names a queue group): the
        # heartbeat thread stops and every poll raises it to the application.
        self._fatal: errors.LogstreamError | None = None

    # ---------------------------------------------------------------- lifecycle

    def subscribe(self, topics: Iterable[str]) -> None:
        names = sorted(set(topics))
        if not names:
            raise errors.InvalidRequestError("subscribe() needs at least one topic")
        with self._lock:
            self.topics = names
            self._beat_now = True
            self._wake.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="logstream-heartbeat", daemon=True
            )
            self._thread.start()

    @property
    def subscribed(self) -> bool:
        return bool(self.topics)

    def close(self, *, commit: bool = True, timeout: float = 5.0) -> None:
        """Commit (with auto-commit), leave the group, stop the heartbeat thread."""
        with self._lock:
            if self._closed:
                return
        if commit and self.auto_commit and self.subscribed and not self._lost:
            try:
                self.commit_positions()
            except errors.LogstreamError as exc:
                log.warning("final auto-commit of group %s failed: %s", self.group_id, exc)
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            member_id, joined = self.member_id, self.member_epoch > 0
        if self._thread is not None:
            self._thread.join(timeout)
        if joined and self.subscribed:
            self._leave(member_id)  # now, so the partitions move at once
        self.commits.close()

    def _leave(self, member_id: str) -> None:
        """Tell the coordinator this member leaves (a static member leaves temporarily: its
        partitions wait for its session timeout); a failure is only logged."""
        epoch = -2 if self.instance_id else -1
        try:
            self._heartbeat_rpc(member_id, epoch, [], timeout=min(self.timeout, 5.0))
        except errors.LogstreamError as exc:
            log.info("leaving group %s: %s", self.group_id, exc)

    # ---------------------------------------------------------------- heartbeat thread

    def _owned(self) -> set[TopicPartition]:
        """What the heartbeat reports as owned: every partition this consumer may be reading
        or about to read. That is its assignment (a partition being revoked stays in it until
        fetching stopped, ``on_revoke`` ran and its commit was made), the assignment the
        application thread is applying, and the latest one received but not yet applied.
        Reporting less would let the broker release a partition (if its target moves on
        meanwhile) that this consumer then starts reading: two owners."""
        with self._lock:
            pending = set(self._applying) | set(self._target)
        return set(self.state.assigned()) | pending

    def _heartbeat_rpc(
        self, member_id: str, epoch: int, owned: list[TopicPartition], *, timeout: float
    ) -> group_pb2.HeartbeatResponse:
        with self._lock:
            self._seq += 1
            seq = self._seq
        req = group_pb2.HeartbeatRequest(
            group_id=self.group_id,
            member_id=member_id,
            member_epoch=epoch,
            instance_id=self.instance_id,
            topics=self.topics,
            assignor=self.assignor,
            session_timeout_ms=self.session_timeout_ms,
            owned=tp_messages(owned),
            client_id=self.client_id,
            request_seq=seq,
        )
        return self.transport.heartbeat(req, timeout=timeout)

    def _run(self) -> None:
        interval = 0.5
        backoff = 0.05
        while True:
            with self._lock:
                if self._closed:
                    return
                member_id = self.member_id
                epoch = self.member_epoch if self.member_epoch > 0 else 0
                lost = self._lost
            if lost:
                # Wait until the application thread dropped the lost partitions.
                with self._lock:
                    self._wake.wait(0.05)
                continue
            if time.monotonic() - self._last_poll > self.max_poll_interval:
                self._leave_idle(member_id, epoch)
                continue
            current = set(self.state.assigned())
            owned = sorted(self._owned())
            try:
                resp = self._heartbeat_rpc(
                    member_id if epoch > 0 else (member_id if self.instance_id else ""),
                    epoch,
                    owned,
                    timeout=min(self.timeout, self.session_timeout_ms / 1000.0),
                )
                backoff = 0.05
            except errors.UnknownMemberIdError as exc:
                self._fenced(str(exc))
                continue
            except errors.IllegalGenerationError as exc:
                self._fenced(str(exc))
                continue
            except errors.GroupKindMismatchError as exc:
                self._stop_fatal(exc)
                return
            except errors.LogstreamError as exc:
                self.last_error = exc
                if not exc.retriable and not isinstance(exc, errors.UnknownServerError):
                    log.error("group %s heartbeat failed: %s", self.group_id, exc)
                with self._lock:
                    self._wake.wait(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            interval = max(resp.heartbeat_interval_ms, 10) / 1000.0
            target = {TopicPartition(p.topic, p.partition) for p in resp.assignment}
            with self._lock:
                self.member_id = resp.member_id
                self.member_epoch = resp.member_epoch
                if target != self._target or (epoch == 0 and target != current):
                    self._target = target
                    self._target_version += 1
                pending = self._target_version != self._applied_version
            if pending:
                self.state.wake_readers()
            with self._lock:
                if not self._beat_now and not self._closed:
                    self._wake.wait(interval)
                self._beat_now = False

    def _stop_fatal(self, exc: errors.LogstreamError) -> None:
        log.error("group %s: %s; not retrying", self.group_id, exc)
        with self._lock:
            self._fatal = exc
            self.last_error = exc
        self.state.wake_readers()

    def metadata(self) -> GroupMetadata:
        with self._lock:
            return GroupMetadata(self.group_id, self.member_id, self.member_epoch)

    def raise_fatal(self) -> None:
        """Raise the refusal that stopped the heartbeat thread, if there was one."""
        if self._fatal is not None:
            raise self._fatal

    def _fenced(self, why: str) -> None:
        log.warning(
            "group %s: member %s fenced (%s); rejoining", self.group_id, self.member_id, why
        )
        with self._lock:
            self._drop_membership()
        self.state.wake_readers()

    def _drop_membership(self) -> None:
        """Lock held: no longer a member; what the consumer holds is lost (dropped without
        a commit at the next poll) and the member joins again."""
        self.member_epoch = -1
        if not self.instance_id:
            self.member_id = ""
        self._target = set()
        self._target_version += 1
        self._lost = bool(self.state.assigned())

    def _leave_idle(self, member_id: str, epoch: int) -> None:
        """Leave the group because the application stopped polling (max_poll_interval_ms):
        its partitions go to the other members; the next poll drops them and rejoins."""
        idle = time.monotonic() - self._last_poll
        held = sorted(self._owned())
        log.warning(
            "consumer of group %s has not polled for %.1f s (max_poll_interval_ms=%d): "
            "leaving the group; its partitions (%s) go to the other members, and the next "
            "poll rejoins",
            self.group_id,
            idle,
            int(self.max_poll_interval * 1000),
            ", ".join(map(str, held)) or "none",
        )
        with self._lock:
            self._drop_membership()
            self._left_idle = True
        if epoch > 0:
            self._leave(member_id)
        self.state.wake_readers()
        # Stay out until the application polls again (on_poll clears _left_idle).
        with self._lock:
            while self._left_idle and not self._closed:
                self._wake.wait(0.5)

    # ---------------------------------------------------------------- application thread

    @property
    def pending(self) -> bool:
        """True when the application thread has an assignment change to apply (or a
        refusal to raise)."""
        return self._target_version != self._applied_version or self._fatal is not None

    def on_poll(self) -> None:
        """Called at the start of every poll: raise a fatal refusal, reconcile, then
        auto-commit when due."""
        self.raise_fatal()
        now = time.monotonic()
        idle = now - self._last_poll
        self._last_poll = now
        if self._left_idle:
            log.warning(
                "consumer of group %s polls again after %.1f s: it had left the group "
                "(max_poll_interval_ms=%d) and lost its partitions; rejoining",
                self.group_id,
                idle,
                int(self.max_poll_interval * 1000),
            )
        was_idle = self._left_idle
        if self.pending:
            self._reconcile()
        if was_idle and not self.pending:
            with self._lock:  # the lost partitions are dropped: the heartbeat thread rejoins
                self._left_idle = False
                self._beat_now = True
                self._wake.notify_all()
        if (
            self.auto_commit
            and self.subscribed
            and now - self._last_commit >= self.auto_commit_interval
        ):
            try:
                self.commit_positions()
            except errors.LogstreamError as exc:
                log.warning("auto-commit of group %s failed: %s", self.group_id, exc)

    def _reconcile(self) -> None:
        with self._lock:
            target = set(self._target)
            version = self._target_version
            lost = self._lost
            self._applying = set(target)
        try:
            self._apply(target, version, lost)
        finally:
            with self._lock:
                # The consumer's assignment now holds what it took on (or the change stays
                # pending and _target still lists it).
                self._applying = set()

    def _apply(self, target: set[TopicPartition], version: int, lost: bool) -> None:
        assignment = self.state.assigned()
        current = set(assignment)
        revoked = current - target
        added = target - current
        if revoked:
            run_callback(self.on_revoke, revoked, "on_revoke", self.group_id)
            if self.auto_commit and not lost:
                try:
                    self.commit_positions(only=revoked)
                except errors.LogstreamError as exc:
                    log.warning("commit before revoking %s failed: %s", sorted(revoked), exc)
            self.commits.forget(revoked)
        committed: dict[TopicPartition, OffsetAndMetadata | None] = {}
        if added:
            try:
                committed = self.commits.fetch_committed(added)
            except errors.LogstreamError as exc:
                log.warning("cannot fetch committed offsets of %s: %s", sorted(added), exc)
                return  # keep the change pending: retried at the next poll
        keep = [tp for tp in assignment if tp not in revoked]
        self.state.assign(keep + sorted(added))
        for tp, c in committed.items():
            if c is not None and c.offset >= 0:
                self.state.seek(tp, c.offset)
                self.commits.remember(tp, c.offset)
        with self._lock:
            self._applied_version = version
            if lost:
                self._lost = False
            self._beat_now = True  # report the change at once
            self._wake.notify_all()
        self.rebalances += 1
        if added:
            run_callback(self.on_assign, added, "on_assign", self.group_id)

    # ---------------------------------------------------------------- commits

    def _identity(self) -> tuple[str, int]:
        """(member id, member epoch) to commit with; ("", -1) outside the group. Raises
        CommitFailedError for a subscribed consumer that is not (or no longer) a member."""
        with self._lock:
            member_id, epoch = self.member_id, self.member_epoch
        if epoch > 0:
            return member_id, epoch
        if self.subscribed:
            raise CommitFailedError(
                f"cannot commit for group {self.group_id}: this consumer is not "
                "(or no longer) a member; its partitions may have moved"
            )
        return "", -1

    def commit_positions(self, only: Iterable[TopicPartition] | None = None) -> None:
        """Commit the current positions (of ``only``), skipping unchanged ones."""
        self._last_commit = time.monotonic()
        self.commits.commit_changed(self.state.known_positions(only))
