"""The consumer: a facade over three workers.

- :class:`~logstream.client.subscription.SubscriptionState`: assignment, positions, epochs,
  pauses and the buffer of fetched batches, under one lock. ``Consumer.position(tp)`` is the
  offset of the next record ``poll`` returns (unknown until resolved by
  ``auto_offset_reset``).
- :class:`~logstream.client.fetcher.Fetcher`: the prefetch thread following the partitions on
  a ``Subscribe`` stream, and the same reading driven by the iterating thread during
  ``for record in consumer`` (see its module docstring).
- :class:`~logstream.client.offsets.OffsetLookup`: ListOffsets lookups (``seek_to_*``,
  resets).
- :class:`~logstream.client.membership.GroupMembership` (only with ``group=``): heartbeats,
  reconciliation of the assignment inside ``poll``, commits.

``poll`` returns a :class:`~logstream.client.chunks.RecordList`: a sequence of
:class:`~logstream.types.Record` built as it is read, straight from the decoded columns.
With ``skip_expired`` records past their ``logstream-expires-at`` time are read and passed
over (:mod:`~logstream.client.expiry`; ``poll_batch`` returns them all).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path

from logstream import errors
from logstream.client import transport as tr
from logstream.client.chunks import Chunk, ColumnChunk, RecordColumns, RecordList
from logstream.client.expiry import is_expired, take_unexpired
from logstream.client.fetcher import Fetcher, FetchSettings
from logstream.client.membership import GroupMembership
from logstream.client.offsets import OffsetLookup
from logstream.client.subscription import SubscriptionState
from logstream.types import (
    EARLIEST,
    LATEST,
    GroupMetadata,
    OffsetAndMetadata,
    Record,
    TopicPartition,
)

_RESETS = {"earliest": EARLIEST, "latest": LATEST, "error": None, "none": None}


class Consumer:
    """Read records from assigned partitions.

    **Not thread-safe**: use one consumer from one thread (as in Kafka). The only exception
    is :meth:`close`, which may be called from another thread to stop a blocking
    ``poll``/iteration. A background prefetch thread does the network I/O.
    """

    def __init__(
        self,
        bootstrap: str | tr.TransportLike,
        *,
        group: str | None = None,
        auto_offset_reset: str = "latest",
        fetch_max_wait_ms: int = 500,
        fetch_min_bytes: int = 1,
        fetch_max_bytes: int = 16 * 1024 * 1024,
        max_partition_fetch_bytes: int = 1024 * 1024,
        max_buffer_bytes: int = 64 * 1024 * 1024,
        check_crcs: bool = True,
        skip_expired: bool = False,
        request_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        client_id: str = "",
        # -- consumer groups (see logstream.client.membership) --
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5_000,
        session_timeout_ms: int = 10_000,
        max_poll_interval_ms: int = 300_000,
        instance_id: str = "",
        assignor: str = "",
        on_assign: Callable[[set[TopicPartition]], None] | None = None,
        on_revoke: Callable[[set[TopicPartition]], None] | None = None,
        # -- transport security (docs/security.md) --
        tls: bool = False,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        token: str | None = None,
    ) -> None:
        if auto_offset_reset not in _RESETS:
            raise errors.InvalidConfigError(
                f"auto_offset_reset must be earliest|latest|error, got {auto_offset_reset!r}"
            )
        self.group = group
        self.client_id = client_id
        self.skip_expired = skip_expired
        self._owns_transport = isinstance(bootstrap, str)
        self._transport = tr.connect(
            bootstrap, tr.ChannelSecurity.of(tls=tls, ca=ca, cert=cert, key=key, token=token)
        )
        self._state = SubscriptionState(
            reset=_RESETS[auto_offset_reset], max_buffer_bytes=max_buffer_bytes
        )
        self._offsets = OffsetLookup(
            self._state, self._transport, timeout=request_timeout_ms / 1000.0
        )
        self._fetcher = Fetcher(
            self._state,
            self._transport,
            FetchSettings(
                max_wait_ms=fetch_max_wait_ms,
                min_bytes=fetch_min_bytes,
                max_bytes=fetch_max_bytes,
                partition_max_bytes=max_partition_fetch_bytes,
                verify=check_crcs,
                timeout=request_timeout_ms / 1000.0,
                backoff=retry_backoff_ms / 1000.0,
            ),
            self._offsets,
        )
        self._membership: GroupMembership | None = None
        if group:
            self._membership = GroupMembership(
                self._state,
                self._transport,
                group,
                enable_auto_commit=enable_auto_commit,
                auto_commit_interval_ms=auto_commit_interval_ms,
                session_timeout_ms=session_timeout_ms,
                max_poll_interval_ms=max_poll_interval_ms,
                instance_id=instance_id,
                assignor=assignor,
                client_id=client_id,
                on_assign=on_assign,
                on_revoke=on_revoke,
                request_timeout_s=request_timeout_ms / 1000.0,
            )

    # -- assignment -----------------------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Read exactly these partitions (replaces the previous assignment). Positions of
        partitions kept stay; new ones start per ``auto_offset_reset`` unless sought."""
        self._check_open()
        self._state.assign(TopicPartition(*tp) for tp in partitions)

    def assignment(self) -> set[TopicPartition]:
        return set(self._state.assigned())

    # -- consumer groups (logstream.client.membership) -------------------------------------------

    def subscribe(self, topics: Iterable[str]) -> None:
        """Join the consumer group (``group=``) for ``topics``: the broker assigns partitions
        to the members and moves them incrementally as members come and go. Assignment
        changes are applied inside ``poll``/iteration (``on_revoke``/``on_assign``)."""
        self._check_open()
        if self._membership is None:
            raise errors.InvalidConfigError(
                "subscribe() needs a consumer group: Consumer(group=...); or use assign([...])"
            )
        self._membership.subscribe(topics)

    def subscription(self) -> set[str]:
        return set(self._membership.topics) if self._membership is not None else set()

    def group_metadata(self) -> GroupMetadata:
        """The member id and epoch this consumer holds in its group (for logs, and for
        telling members apart); the member id changes when the consumer is fenced and joins
        again."""
        return self._group("group_metadata()").metadata()

    def _group(self, what: str = "committing") -> GroupMembership:
        self._check_open()
        if self._membership is None:
            raise errors.InvalidConfigError(f"{what} needs a consumer group: Consumer(group=...)")
        return self._membership

    def commit(
        self, offsets: Mapping[TopicPartition, int | OffsetAndMetadata] | None = None
    ) -> None:
        """Commit synchronously: ``offsets`` (the next offset to read per partition), or by
        default the positions of every assigned partition (everything returned so far)."""
        group = self._group()
        if offsets is None:
            group.commit_positions()
        else:
            group.commits.commit(offsets)

    def commit_async(
        self,
        offsets: Mapping[TopicPartition, int | OffsetAndMetadata] | None = None,
        callback: Callable[[Mapping[TopicPartition, int], BaseException | None], None]
        | None = None,
    ) -> concurrent.futures.Future[None]:
        """Commit in the background (positions snapshotted now); returns a Future."""
        commits = self._group().commits
        snapshot = dict(offsets) if offsets is not None else self._state.known_positions()
        return commits.commit_async(snapshot, callback)

    def committed(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offsets of ``partitions`` (None where nothing is committed)."""
        return self._group().commits.fetch_committed(partitions)

    # -- positions ------------------------------------------------------------------------------

    def seek(self, partition: TopicPartition | tuple[str, int], offset: int) -> None:
        """The next ``poll`` returns records from ``offset`` on."""
        tp = self._assigned(partition)
        if offset < 0:
            raise errors.InvalidRequestError(f"offset must be >= 0, got {offset}")
        self._state.seek(tp, offset)

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        self._seek_to({tp: EARLIEST for tp in self._assigned_list(partitions)})

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        self._seek_to({tp: LATEST for tp in self._assigned_list(partitions)})

    def seek_to_timestamp(
        self, timestamp_ms: int, partitions: Iterable[TopicPartition] | None = None
    ) -> None:
        """Seek each partition to its first record with timestamp >= ``timestamp_ms``."""
        tps = self._assigned_list(partitions)
        for tp, offset in self.offsets_for_times({tp: timestamp_ms for tp in tps}).items():
            self._state.seek(tp, offset)

    def _seek_to(self, specs: dict[TopicPartition, int]) -> None:
        for tp, offset in self._offsets.list_offsets(specs).items():
            self._state.seek(tp, offset)

    def position(self, partition: TopicPartition | tuple[str, int]) -> int:
        """The offset of the next record ``poll`` returns (resolving a reset if needed)."""
        tp = self._assigned(partition)
        pos = self._state.position(tp)
        if pos is None:
            pos = self._offsets.resolve_reset([tp])[tp]
        return pos

    def offsets_for_times(self, timestamps: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """For each partition, the first offset whose timestamp is >= the given one (ms);
        the log end offset when there is none."""
        for ts in timestamps.values():
            if ts < 0:
                raise errors.InvalidTimestampError(f"timestamp must be >= 0, got {ts}")
        return self._offsets.list_offsets(timestamps)

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets.list_offsets({TopicPartition(*tp): EARLIEST for tp in partitions})

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets.list_offsets({TopicPartition(*tp): LATEST for tp in partitions})

    def highwater(self, partition: TopicPartition) -> int | None:
        """The log end offset seen in the last fetch of ``partition`` (None before one)."""
        return self._state.high_watermark(TopicPartition(*partition))

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop returning and fetching records of these partitions (positions are kept)."""
        self._state.pause([TopicPartition(*p) for p in partitions])

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._state.resume([TopicPartition(*p) for p in partitions])

    def paused(self) -> set[TopicPartition]:
        return self._state.paused_partitions()

    # -- reading --------------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0, max_records: int = 500) -> RecordList:
        """Records from the assigned partitions, waiting up to ``timeout`` seconds for the
        first one; an empty sequence when none arrived. Raises a fetch error (e.g.
        ``OffsetOutOfRangeError`` with ``auto_offset_reset='error'``) once.

        The answer is a :class:`~logstream.client.chunks.RecordList` (a sequence of
        :class:`Record`, equal to the list of the same records): each ``Record`` is built
        when it is read, so records the loop drops right away cost no garbage collection."""
        self._take_over_from_iteration()
        return self._poll(timeout, max_records)

    def _poll(self, timeout: float, max_records: int, *, advance: bool = True) -> RecordList:
        out = RecordList()
        if self.skip_expired and advance:
            self._read(timeout, max_records, partial(take_unexpired, out))
        else:  # iteration (advance=False) skips expired records as it yields
            self._read(timeout, max_records, out.take_from, advance=advance)
        return out

    def poll_batch(self, timeout: float = 0.0, max_records: int = 100_000) -> RecordColumns:
        """Like :meth:`poll`, but columnar: numpy offsets/timestamps plus key/value buffers,
        no per-record objects (for analytics replay)."""
        chunks: list[ColumnChunk] = []
        self._take_over_from_iteration()
        self._read(timeout, max_records, lambda c, n: chunks.append(c.take_columns(n)))
        return RecordColumns(chunks)

    def __iter__(self) -> Iterator[Record]:
        """Yield records as they arrive, until the consumer is closed.

        While waiting, this thread reads the partitions' ``Subscribe`` stream itself (no
        hand-over from the prefetch thread; see :mod:`logstream.client.fetcher`)."""
        if not self._fetcher.streams:
            yield from self._iter_polling()
            return
        token = object()
        try:
            while True:
                if not self._fetcher.owns_direct(token):
                    # Another iteration, suspended mid-list, gives up what it has not yielded.
                    self._state.discard_iteration_rest()
                    self._fetcher.begin_direct(token)
                try:
                    records = self._poll(0.0, 500, advance=False)
                except errors.ClientClosedError:
                    return
                if records:
                    positioned = self._state.yield_positioned(list(records))
                    if self.skip_expired:
                        now_ms = int(time.time() * 1000)
                        positioned = (
                            r for r in positioned if not (r.headers and is_expired(r, now_ms))
                        )
                    yield from positioned
                    continue
                if not self._fetcher.read_direct():
                    return
        finally:
            self._fetcher.end_direct(token)

    def _iter_polling(self) -> Iterator[Record]:
        while not self._state.closed:
            try:
                records = self.poll(timeout=0.5)
            except errors.ClientClosedError:
                return
            yield from records

    def _take_over_from_iteration(self) -> None:
        """A ``poll`` while an iteration is suspended: reading goes back to the prefetcher."""
        if self._fetcher.direct_active:
            self._state.discard_iteration_rest()
            self._fetcher.end_direct()

    def _read(
        self,
        timeout: float,
        max_records: int,
        take: Callable[[Chunk, int], None],
        *,
        advance: bool = True,
    ) -> None:
        self._check_open()
        membership = self._membership
        if membership is not None:  # consumer groups: reconcile, auto-commit
            membership.on_poll()
        self._state.take(
            timeout,
            max_records,
            take,
            advance=advance,
            # consumer groups: return early so that the next poll applies the change
            stop_early=None if membership is None else lambda: membership.pending,
        )
        if membership is not None:
            membership.raise_fatal()  # the refusal arrived while this poll waited

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop prefetching and close the connection. Idempotent; safe from another thread.
        In a group: auto-commit the positions and leave the group first."""
        if self._membership is not None and not self._state.closed:
            self._membership.close()
        if not self._state.close():
            return
        self._fetcher.join(timeout)
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state.closed:
            raise errors.ClientClosedError("consumer is closed")

    def _assigned(self, partition: TopicPartition | tuple[str, int]) -> TopicPartition:
        self._check_open()
        tp = TopicPartition(*partition)
        if not self._state.is_assigned(tp):
            raise errors.InvalidRequestError(f"partition {tp} is not assigned to this consumer")
        return tp

    def _assigned_list(self, partitions: Iterable[TopicPartition] | None) -> list[TopicPartition]:
        if partitions is None:
            self._check_open()
            return self._state.assigned()
        return [self._assigned(tp) for tp in partitions]
