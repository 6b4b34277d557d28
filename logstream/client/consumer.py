"""The consumer: manual assignment, positions, seeks, and a background prefetcher.

Positions: ``_positions[tp]`` is the offset of the next record ``poll`` will return (None =
not known yet: resolved by ``auto_offset_reset``). Consumer groups (``group=``,
``subscribe``, ``commit``) live in :mod:`logstream.client.membership`: it calls ``_assign``
with the partitions the coordinator gave this member and fills ``_positions`` from the
committed offsets, from inside ``poll``.

Prefetching: a background thread follows every assigned, unpaused partition with a known
position on one server-streaming ``Subscribe`` call (the broker pushes batches as they are
appended; with ``fetch_min_bytes`` > 1, or a broker without ``Subscribe``, it long-polls
``Fetch`` with ``fetch_max_wait_ms`` instead), decodes whole batches into
:class:`~logstream.client.fetcher.Chunk` objects and queues them (bounded by
``max_buffer_bytes``), so the next data is on its way while the application processes.
Every chunk carries the partition's *epoch*; ``seek``, ``pause`` and ``assign`` bump it,
cancel the in-flight stream or long poll and make older chunks stale.

Iteration (``for record in consumer``) reads differently: while the loop waits for records,
the iterating thread reads its own ``Subscribe`` stream (asking the broker for a heartbeat
every ``fetch_max_wait_ms`` when idle) and the prefetch thread stands by. A record then
reaches the loop without a hand-over between threads, which is ~0.25 ms of end-to-end
latency at low rates on a busy 2-core machine (docs/performance.md, Latency). A ``poll``
called while an iteration is suspended hands reading back to the prefetch thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from logstream import errors
from logstream.client import transport as tr
from logstream.client.fetcher import Chunk, RecordColumns, chunks_from_records
from logstream.client.membership import GroupMembership
from logstream.protocol import log_pb2
from logstream.protocol.status import error_for_code
from logstream.types import EARLIEST, LATEST, OffsetAndMetadata, Record, TopicPartition

log = logging.getLogger("logstream.client.consumer")

_RESETS = {"earliest": EARLIEST, "latest": LATEST, "error": None, "none": None}


class _DirectStream:
    """The iterating thread's own Subscribe stream (see the module docstring)."""

    __slots__ = ("call", "cancels", "epochs", "offsets", "responses")

    def __init__(
        self,
        call: Any,
        responses: Iterator[Any],
        epochs: dict[TopicPartition, int],
        offsets: dict[TopicPartition, int],
        cancels: int,
    ) -> None:
        self.call = call
        self.responses = responses
        self.epochs = epochs
        self.offsets = offsets
        self.cancels = cancels


class Consumer:
    """Read records from assigned partitions.

    **Not thread-safe**: use one consumer from one thread (as in Kafka). The only exception
    is :meth:`wakeup`-free :meth:`close`, which may be called from another thread to stop a
    blocking ``poll``/iteration. A background prefetch thread does the network I/O.
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
    ) -> None:
        if auto_offset_reset not in _RESETS:
            raise errors.InvalidConfigError(
                f"auto_offset_reset must be earliest|latest|error, got {auto_offset_reset!r}"
            )
        self.group = group
        self.client_id = client_id
        self._reset = _RESETS[auto_offset_reset]
        self._max_wait_ms = fetch_max_wait_ms
        self._min_bytes = fetch_min_bytes
        self._max_bytes = fetch_max_bytes
        self._partition_max_bytes = max_partition_fetch_bytes
        self._max_buffer = max_buffer_bytes
        self._verify = check_crcs
        self._timeout = request_timeout_ms / 1000.0
        self._backoff = retry_backoff_ms / 1000.0
        self._owns_transport = isinstance(bootstrap, str)
        self._transport = tr.connect(bootstrap)

        self._lock = threading.Lock()
        self._data = threading.Condition(self._lock)  # poll() waits for data here
        self._work = threading.Condition(self._lock)  # the fetcher waits for work here
        self._assignment: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int | None] = {}
        self._fetch_offsets: dict[TopicPartition, int] = {}
        self._epochs: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._halted: set[TopicPartition] = set()  # fetch error with no reset policy
        self._high_watermarks: dict[TopicPartition, int] = {}
        self._buffer: deque[Chunk] = deque()
        self._buffered_bytes = 0
        self._errors: deque[BaseException] = deque()
        self._inflight: Any = None
        self._cancels = 0  # bumped by _cancel_inflight: a stream ended on purpose, not failed
        # Subscribe has no min_bytes: a consumer asking for bigger answers long-polls Fetch.
        self._use_subscribe = fetch_min_bytes <= 1 and hasattr(self._transport.log, "Subscribe")
        self._unreachable_since: float | None = None
        self._closed = False
        # Iteration reads the stream on the application thread (module docstring): the
        # owner token of the iteration doing so, its stream, and the prefetcher's state.
        self._direct_owner: object | None = None
        self._direct: _DirectStream | None = None
        self._fetcher_busy = False
        self._fetcher_idle = threading.Condition(self._lock)
        # Records an iteration took but has not yielded yet; their partitions' positions
        # advance one yielded record at a time (position() and commit() inside the loop).
        self._iter_rest: list[Record] | None = None
        self._iter_next = 0
        self._fetcher = threading.Thread(
            target=self._run, name="logstream-consumer-fetcher", daemon=True
        )
        self._fetcher.start()
        # -- consumer groups: membership, commits (logstream.client.membership) --
        self._membership: GroupMembership | None = None
        if group:
            self._membership = GroupMembership(
                self,
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
                request_timeout_s=self._timeout,
            )

    # -- assignment -----------------------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Read exactly these partitions (replaces the previous assignment). Positions of
        partitions kept stay; new ones start per ``auto_offset_reset`` unless sought."""
        self._check_open()
        self._assign([TopicPartition(*tp) for tp in partitions])

    def _assign(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self._discard_iteration_rest()
            new = list(dict.fromkeys(partitions))
            for tp in self._assignment:
                if tp not in new:
                    self._positions.pop(tp, None)
                    self._fetch_offsets.pop(tp, None)
                    self._paused.discard(tp)
                    self._bump(tp)
            for tp in new:
                self._positions.setdefault(tp, None)
                self._epochs.setdefault(tp, 0)
            self._assignment = new
            self._work.notify()
        self._cancel_inflight()

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

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

    def _group(self) -> GroupMembership:
        self._check_open()
        if self._membership is None:
            raise errors.InvalidConfigError(
                "committing needs a consumer group: Consumer(group=...)"
            )
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
            group.commit(offsets)

    def commit_async(
        self,
        offsets: Mapping[TopicPartition, int | OffsetAndMetadata] | None = None,
        callback: Callable[[Mapping[TopicPartition, int], BaseException | None], None]
        | None = None,
    ) -> concurrent.futures.Future[None]:
        """Commit in the background (positions snapshotted now); returns a Future."""
        return self._group().commit_async(offsets, callback)

    def committed(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offsets of ``partitions`` (None where nothing is committed)."""
        return self._group().fetch_committed(partitions)

    def _wake_reader(self) -> None:
        """Called by the heartbeat thread: a blocked poll (or an iteration waiting on its
        stream) returns to apply a group change."""
        with self._lock:
            self._data.notify_all()
        if self._direct_owner is not None:
            self._cancel_inflight()

    # -- positions ------------------------------------------------------------------------------

    def seek(self, partition: TopicPartition | tuple[str, int], offset: int) -> None:
        """The next ``poll`` returns records from ``offset`` on."""
        tp = self._assigned(partition)
        if offset < 0:
            raise errors.InvalidRequestError(f"offset must be >= 0, got {offset}")
        self._set_position(tp, offset)

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        tps = self._assigned_list(partitions)
        for tp, offset in self._list_offsets({tp: EARLIEST for tp in tps}).items():
            self._set_position(tp, offset)

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        tps = self._assigned_list(partitions)
        for tp, offset in self._list_offsets({tp: LATEST for tp in tps}).items():
            self._set_position(tp, offset)

    def seek_to_timestamp(
        self, timestamp_ms: int, partitions: Iterable[TopicPartition] | None = None
    ) -> None:
        """Seek each partition to its first record with timestamp >= ``timestamp_ms``."""
        tps = self._assigned_list(partitions)
        for tp, offset in self.offsets_for_times({tp: timestamp_ms for tp in tps}).items():
            self._set_position(tp, offset)

    def position(self, partition: TopicPartition | tuple[str, int]) -> int:
        """The offset of the next record ``poll`` returns (resolving a reset if needed)."""
        tp = self._assigned(partition)
        pos = self._positions.get(tp)
        if pos is None:
            pos = self._resolve_reset([tp])[tp]
        return pos

    def offsets_for_times(self, timestamps: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """For each partition, the first offset whose timestamp is >= the given one (ms);
        the log end offset when there is none."""
        for ts in timestamps.values():
            if ts < 0:
                raise errors.InvalidTimestampError(f"timestamp must be >= 0, got {ts}")
        return self._list_offsets(timestamps)

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._list_offsets({TopicPartition(*tp): EARLIEST for tp in partitions})

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._list_offsets({TopicPartition(*tp): LATEST for tp in partitions})

    def highwater(self, partition: TopicPartition) -> int | None:
        """The log end offset seen in the last fetch of ``partition`` (None before one)."""
        return self._high_watermarks.get(TopicPartition(*partition))

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop returning and fetching records of these partitions (positions are kept)."""
        with self._lock:
            self._discard_iteration_rest()
            for p in partitions:
                tp = TopicPartition(*p)
                if tp in self._positions:
                    self._paused.add(tp)
                    self._bump(tp)
        self._cancel_inflight()

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            self._discard_iteration_rest()
            for p in partitions:
                self._paused.discard(TopicPartition(*p))
            self._work.notify()
        self._cancel_inflight()  # a running stream/long poll does not include them yet

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    # -- reading --------------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0, max_records: int = 500) -> list[Record]:
        """Records from the assigned partitions, waiting up to ``timeout`` seconds for the
        first one; [] when none arrived. Raises a fetch error (e.g. ``OffsetOutOfRangeError``
        with ``auto_offset_reset='error'``) once."""
        if self._direct_owner is not None:
            self._end_direct()
        return self._poll(timeout, max_records)

    def _poll(self, timeout: float, max_records: int, *, advance: bool = True) -> list[Record]:
        out: list[Record] = []
        self._read(
            timeout, max_records, lambda c, n: out.extend(c.take_records(n)), advance=advance
        )
        return out

    def poll_batch(self, timeout: float = 0.0, max_records: int = 100_000) -> RecordColumns:
        """Like :meth:`poll`, but columnar: numpy offsets/timestamps plus key/value buffers,
        no per-record objects (for analytics replay)."""
        chunks: list[Any] = []
        if self._direct_owner is not None:
            self._end_direct()
        self._read(timeout, max_records, lambda c, n: chunks.append(c.take_columns(n)))
        return RecordColumns(chunks)

    def __iter__(self) -> Iterator[Record]:
        """Yield records as they arrive, until the consumer is closed.

        While waiting, this thread reads the partitions' ``Subscribe`` stream itself (no
        hand-over from the prefetch thread; see the module docstring)."""
        if not self._use_subscribe:
            yield from self._iter_polling()
            return
        token = object()
        try:
            while True:
                if self._direct_owner is not token:
                    self._begin_direct(token)
                try:
                    records = self._poll(0.0, 500, advance=False)
                except errors.ClientClosedError:
                    return
                if records:
                    yield from self._yield_positioned(records)
                    continue
                if not self._read_direct():
                    return
        finally:
            self._end_direct(token)

    def _yield_positioned(self, records: list[Record]) -> Iterator[Record]:
        """Yield ``records``, advancing each one's partition position as it goes; stop early
        when the application discards the rest (``_discard_iteration_rest``)."""
        positions = self._positions
        self._iter_rest, self._iter_next = records, 0
        key: tuple[str, int] | None = None
        tp = TopicPartition("", 0)
        try:
            while self._iter_rest is records and self._iter_next < len(records):
                rec = records[self._iter_next]
                self._iter_next += 1
                if key != (rec.topic, rec.partition):
                    key = (rec.topic, rec.partition)
                    tp = TopicPartition(*key)
                positions[tp] = rec.offset + 1
                yield rec
        finally:
            if self._iter_rest is records:
                with self._lock:
                    if self._iter_next < len(records):  # generator closed mid-list (break)
                        self._discard_iteration_rest()
                    self._iter_rest = None

    def _iter_polling(self) -> Iterator[Record]:
        while not self._closed:
            try:
                records = self.poll(timeout=0.5)
            except errors.ClientClosedError:
                return
            yield from records

    # -- iteration: the application thread reads its own stream -----------------------------

    def _begin_direct(self, token: object) -> None:
        """Make the iterating thread the stream's reader: the prefetcher stops and waits."""
        with self._lock:
            # Another iteration, suspended mid-list, gives up what it has not yielded yet.
            self._discard_iteration_rest()
            self._direct_owner = token
            self._work.notify_all()  # cut a prefetcher's retry backoff short
        self._cancel_inflight()
        with self._lock:
            while self._fetcher_busy and not self._closed:
                self._fetcher_idle.wait(0.1)

    def _end_direct(self, token: object | None = None) -> None:
        """Hand reading back to the prefetch thread (``token``: only if that iteration
        still owns it; without one, a ``poll`` takes over mid-iteration)."""
        if self._direct_owner is None or (token is not None and self._direct_owner is not token):
            return
        self._drop_direct()
        with self._lock:
            if token is None:
                self._discard_iteration_rest()
            self._direct_owner = None
            self._work.notify()

    def _discard_iteration_rest(self) -> None:
        """Lock held. The application changes positions (seek, pause, assign, poll) while an
        iteration holds records it has not yielded yet: drop them, and have their partitions
        fetched again from the position (the last record yielded)."""
        rest = self._iter_rest
        if rest is None:
            return
        self._iter_rest = None
        for tp in {TopicPartition(r.topic, r.partition) for r in rest[self._iter_next :]}:
            if tp in self._positions:
                self._bump(tp)
        self._cancels += 1  # the direct stream read past them: reopen it from the positions

    def _drop_direct(self) -> None:
        d, self._direct = self._direct, None
        if d is not None:
            if self._inflight is d.call:
                self._inflight = None
            d.call.cancel()

    def _read_direct(self) -> bool:
        """Wait on this thread for the next message of the iteration's stream (opening it
        first when needed) and queue its records. False once the consumer is closed."""
        d = self._direct
        if d is not None and self._cancels != d.cancels:
            self._drop_direct()  # a seek/pause/assign/group change since it was opened
            d = None
        if d is None:
            d = self._open_direct()
            if d is None:
                return not self._closed
        try:
            resp = next(d.responses)
        except StopIteration:
            self._drop_direct()
            # The broker ended the stream (shutting down): do not re-subscribe in a hot loop.
            with self._lock:
                if not self._closed:
                    self._work.wait(self._backoff)
            return not self._closed
        except errors.LogstreamError as exc:
            self._drop_direct()
            if self._closed:
                return False
            if self._cancels != d.cancels:
                return True  # cancelled on purpose: the next call opens a new stream
            self._on_error(exc)
            return not self._closed
        self._unreachable_since = None
        try:
            self._absorb(resp, d.epochs, d.offsets)
        except errors.LogstreamError as exc:
            self._drop_direct()
            self._on_error(exc)
        return not self._closed

    def _open_direct(self) -> _DirectStream | None:
        """Open the iteration's Subscribe stream over every fetchable partition; None when
        there was nothing to follow yet (a reset resolved, or a wait for a change)."""
        with self._lock:
            if self._closed:
                return None
            need_reset = self._needs_reset()
            fetchable = [] if need_reset else self._fetchable()
            if not need_reset and not fetchable:
                # Nothing to read (all paused, no assignment yet): wait for a group change.
                self._data.wait(self._max_wait_ms / 1000.0)
                return None
            epochs = {tp: self._epochs[tp] for tp in fetchable}
            offsets = {tp: self._fetch_offsets[tp] for tp in fetchable}
            cancels = self._cancels
        if need_reset:
            try:
                self._resolve_reset(need_reset)
            except errors.LogstreamError as exc:
                self._on_error(exc)
            return None
        req = log_pb2.SubscribeRequest(
            max_bytes=self._max_bytes,
            partitions=self._fetch_partitions(fetchable, offsets),
            heartbeat_ms=self._max_wait_ms,
        )
        try:
            call = self._transport.log.Subscribe(req)
        except ValueError:  # the channel was closed under us by close()
            return None
        d = self._direct = _DirectStream(
            call, tr.iterate(call, self._transport.address), epochs, offsets, cancels
        )
        with self._lock:
            self._inflight = call
            stale = self._closed or self._cancels != cancels
        if stale:  # a close or group change raced with opening the stream
            call.cancel()
        return d

    def _read(self, timeout: float, max_records: int, take: Any, *, advance: bool = True) -> None:
        """Take up to ``max_records`` buffered records (waiting up to ``timeout`` for the
        first); ``advance=False`` leaves the positions to the caller (iteration)."""
        self._check_open()
        if self._membership is not None:  # consumer groups: reconcile, auto-commit
            self._membership.on_poll()
        deadline = time.monotonic() + max(timeout, 0.0)
        remaining = max_records
        taken_to: dict[TopicPartition, int] = {}  # advance=False: where each partition got to
        with self._lock:
            while True:
                if self._errors:
                    raise self._errors.popleft()
                if self._reset is None:
                    self._check_positions()
                while self._buffer and remaining > 0:
                    chunk = self._buffer[0]
                    tp = TopicPartition(chunk.topic, chunk.partition)
                    if (
                        self._epochs.get(tp) != chunk.epoch
                        or tp in self._paused
                        or taken_to.get(tp, self._positions.get(tp)) != chunk.next_offset
                    ):
                        self._drop_head()
                        continue
                    before = chunk.remaining
                    take(chunk, remaining)
                    got = before - chunk.remaining
                    remaining -= got
                    if advance:
                        self._positions[tp] = chunk.next_offset
                    else:
                        taken_to[tp] = chunk.next_offset
                    if chunk.remaining == 0:
                        self._drop_head()
                if remaining < max_records:
                    return
                if self._closed:
                    raise errors.ClientClosedError("consumer closed")
                if self._membership is not None and self._membership.pending:
                    return  # consumer groups: the next poll applies the assignment change
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._data.wait(left)

    def _check_positions(self) -> None:
        """Lock held; auto_offset_reset='error': every partition needs a position."""
        missing = [
            tp
            for tp in self._assignment
            if self._positions.get(tp) is None and tp not in self._paused
        ]
        if missing:
            raise errors.OffsetOutOfRangeError(
                f"no position for {', '.join(map(str, missing))} and auto_offset_reset='error';"
                " seek() first"
            )

    def _drop_head(self) -> None:
        chunk = self._buffer.popleft()
        full = self._buffered_bytes >= self._max_buffer
        self._buffered_bytes -= chunk.nbytes
        if full and self._buffered_bytes < self._max_buffer:
            self._work.notify()  # the prefetcher waits for room only when the buffer was full

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop prefetching and close the connection. Idempotent; safe from another thread.
        In a group: auto-commit the positions and leave the group first."""
        if self._membership is not None and not self._closed:
            self._membership.close()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._buffer.clear()
            self._work.notify_all()
            self._data.notify_all()
        self._cancel_inflight()
        self._fetcher.join(timeout)
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise errors.ClientClosedError("consumer is closed")

    def _assigned(self, partition: TopicPartition | tuple[str, int]) -> TopicPartition:
        self._check_open()
        tp = TopicPartition(*partition)
        if tp not in self._positions:
            raise errors.InvalidRequestError(f"partition {tp} is not assigned to this consumer")
        return tp

    def _assigned_list(self, partitions: Iterable[TopicPartition] | None) -> list[TopicPartition]:
        if partitions is None:
            self._check_open()
            return list(self._assignment)
        return [self._assigned(tp) for tp in partitions]

    def _bump(self, tp: TopicPartition) -> None:
        """Lock held: invalidate buffered and in-flight data of ``tp``."""
        self._epochs[tp] = self._epochs.get(tp, 0) + 1
        kept = deque(c for c in self._buffer if (c.topic, c.partition) != tp)
        full = self._buffered_bytes >= self._max_buffer
        self._buffered_bytes = sum(c.nbytes for c in kept)
        self._buffer = kept
        if full and self._buffered_bytes < self._max_buffer:
            self._work.notify()  # the prefetcher waits for room only when the buffer was full
        pos = self._positions.get(tp)
        if pos is not None:
            self._fetch_offsets[tp] = pos
        else:
            self._fetch_offsets.pop(tp, None)

    def _set_position(self, tp: TopicPartition, offset: int) -> None:
        with self._lock:
            self._discard_iteration_rest()
            if tp not in self._positions:
                return
            self._positions[tp] = offset
            self._halted.discard(tp)
            self._bump(tp)
            self._work.notify()
        self._cancel_inflight()

    def _cancel_inflight(self) -> None:
        self._cancels += 1
        fut = self._inflight
        if fut is not None:
            try:
                fut.cancel()
            except Exception:
                pass

    def _list_offsets(self, specs: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        if not specs:
            return {}
        req = log_pb2.ListOffsetsRequest(
            partitions=[
                log_pb2.ListOffsetsPartition(topic=tp.topic, partition=tp.partition, timestamp=ts)
                for tp, ts in specs.items()
            ]
        )
        resp = tr.call(
            self._transport.log.ListOffsets,
            req,
            timeout=self._timeout,
            address=self._transport.address,
        )
        out: dict[TopicPartition, int] = {}
        for p in resp.partitions:
            tp = TopicPartition(p.topic, p.partition)
            if p.error_code:
                raise error_for_code(p.error_code, p.error_message or str(tp))
            out[tp] = p.offset
        missing = [tp for tp in specs if tp not in out]
        if missing:
            raise errors.UnknownServerError(f"no offsets returned for {missing}")
        return out

    def _resolve_reset(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Positions for partitions without one, per ``auto_offset_reset``."""
        if self._reset is None:
            raise errors.OffsetOutOfRangeError(
                f"no position for {', '.join(map(str, tps))} and auto_offset_reset='error'; "
                "seek() first"
            )
        with self._lock:
            epochs = {tp: self._epochs.get(tp) for tp in tps}
        found = self._list_offsets({tp: self._reset for tp in tps})
        with self._lock:
            for tp, offset in found.items():
                if self._epochs.get(tp) == epochs[tp] and tp in self._positions:
                    if self._positions[tp] is None:
                        self._positions[tp] = offset
                        self._fetch_offsets[tp] = offset
                    found[tp] = self._positions[tp]  # type: ignore[assignment]
        return found

    # -- prefetcher thread ----------------------------------------------------------------------

    def _needs_reset(self) -> list[TopicPartition]:
        """Lock held: assigned, unpaused partitions without a position to reset."""
        if self._reset is None:
            return []
        return [
            tp
            for tp in self._assignment
            if self._positions.get(tp) is None and tp not in self._paused
        ]

    def _run(self) -> None:
        while True:
            with self._lock:
                self._fetcher_busy = False
                self._fetcher_idle.notify_all()
                while True:
                    if self._closed:
                        return
                    if self._direct_owner is not None:  # an iteration reads the stream
                        self._work.wait()
                        continue
                    need_reset = self._needs_reset()
                    fetchable = self._fetchable()
                    if need_reset or fetchable:
                        break
                    self._work.wait()
                epochs = {tp: self._epochs[tp] for tp in fetchable}
                self._fetcher_busy = True
            try:
                if need_reset:
                    self._resolve_reset(need_reset)
                    continue
                if self._use_subscribe:
                    self._stream(fetchable, epochs)
                else:
                    self._fetch(fetchable, epochs)
                    self._unreachable_since = None
            except errors.ClientClosedError:
                continue
            except errors.LogstreamError as exc:
                self._on_error(exc)
            except Exception as exc:  # pragma: no cover - a bug; surface it to poll()
                log.exception("consumer fetcher failed")
                self._on_error(errors.UnknownServerError(repr(exc)))

    def _on_error(self, exc: errors.LogstreamError) -> None:
        now = time.monotonic()
        surface = True
        if exc.retriable:
            # Broker unreachable or restarting: keep retrying quietly, but tell the
            # application if it lasts longer than request_timeout_ms.
            if self._unreachable_since is None:
                self._unreachable_since = now
            surface = now - self._unreachable_since >= self._timeout
            if surface:
                self._unreachable_since = now
        with self._lock:
            if surface and not self._closed:
                self._errors.append(exc)
                self._data.notify_all()
            self._work.wait(self._backoff)

    def _fetchable(self) -> list[TopicPartition]:
        """Lock held."""
        if self._buffered_bytes >= self._max_buffer:
            return []
        out = []
        for tp in self._assignment:
            if tp in self._paused or tp in self._halted or self._positions.get(tp) is None:
                continue
            if tp not in self._fetch_offsets:
                self._fetch_offsets[tp] = self._positions[tp]  # type: ignore[assignment]
            out.append(tp)
        return out

    def _fetch_partitions(
        self, tps: list[TopicPartition], offsets: dict[TopicPartition, int]
    ) -> list[log_pb2.FetchPartition]:
        return [
            log_pb2.FetchPartition(
                topic=tp.topic,
                partition=tp.partition,
                offset=offsets[tp],
                max_bytes=self._partition_max_bytes,
            )
            for tp in tps
        ]

    def _fetch(self, tps: list[TopicPartition], epochs: dict[TopicPartition, int]) -> None:
        with self._lock:
            offsets = {tp: self._fetch_offsets[tp] for tp in tps}
        req = log_pb2.FetchRequest(
            max_wait_ms=self._max_wait_ms,
            min_bytes=self._min_bytes,
            max_bytes=self._max_bytes,
            partitions=self._fetch_partitions(tps, offsets),
        )
        fut = self._transport.log.Fetch.future(
            req, timeout=self._timeout + self._max_wait_ms / 1000.0
        )
        with self._lock:
            self._inflight = fut
            stale = self._closed or any(self._epochs.get(tp) != e for tp, e in epochs.items())
        if stale:  # a seek/assign/close raced with building the request
            fut.cancel()
        try:
            resp = tr.result(fut, address=self._transport.address)
        finally:
            self._inflight = None
        self._absorb(resp, epochs, offsets)

    def _stream(self, tps: list[TopicPartition], epochs: dict[TopicPartition, int]) -> None:
        """Follow ``tps`` on one ``Subscribe`` stream until a seek/assign/pause/resume/close
        cancels it, the buffer fills up, or it fails. The broker pushes each append as it
        lands: no request per answer, no re-issued long poll (docs/performance.md, Latency)."""
        with self._lock:
            offsets = {tp: self._fetch_offsets[tp] for tp in tps}
            cancels = self._cancels
        req = log_pb2.SubscribeRequest(
            max_bytes=self._max_bytes,
            partitions=self._fetch_partitions(tps, offsets),
        )
        call = self._transport.log.Subscribe(req)
        with self._lock:
            self._inflight = call
            stale = (
                self._closed
                or self._cancels != cancels
                or self._direct_owner is not None
                or any(self._epochs.get(tp) != e for tp, e in epochs.items())
            )
        if stale:  # a seek/assign/close raced with opening the stream
            call.cancel()
        ended = True
        try:
            for resp in tr.iterate(call, self._transport.address):
                self._unreachable_since = None
                self._absorb(resp, epochs, offsets)
                with self._lock:
                    if self._buffered_bytes >= self._max_buffer:
                        ended = False
                        break
        except errors.LogstreamError:
            if self._closed or self._cancels != cancels:
                return  # cancelled on purpose: the caller's loop starts the next stream
            raise
        finally:
            self._inflight = None
            cancel = getattr(call, "cancel", None)
            if cancel is not None:
                cancel()  # no-op when the stream is already over
        if ended and not (self._closed or self._cancels != cancels):
            # The broker ended the stream (shutting down): do not re-subscribe in a hot loop.
            with self._lock:
                self._work.wait(self._backoff)

    def _absorb(
        self, resp: Any, epochs: dict[TopicPartition, int], offsets: dict[TopicPartition, int]
    ) -> None:
        """Queue the batches of a fetch answer (or stream message) and advance ``offsets``;
        then raise the first partition error, if any."""
        decoded: list[tuple[TopicPartition, list[Chunk], int]] = []
        problems: list[tuple[TopicPartition, Any]] = []
        for p in resp.partitions:
            tp = TopicPartition(p.topic, p.partition)
            if tp not in epochs:
                continue
            self._high_watermarks[tp] = p.high_watermark
            if p.error_code:
                problems.append((tp, p))
                continue
            if not p.records:
                continue
            chunks = chunks_from_records(
                tp.topic, tp.partition, epochs[tp], p.records, offsets[tp], verify=self._verify
            )
            if chunks:
                decoded.append((tp, chunks, chunks[-1].base + chunks[-1].n))
        with self._lock:
            for tp, chunks, next_offset in decoded:
                offsets[tp] = next_offset
                if self._epochs.get(tp) != epochs[tp] or self._closed:
                    continue
                self._fetch_offsets[tp] = next_offset
                for c in chunks:
                    self._buffer.append(c)
                    self._buffered_bytes += c.nbytes
            if decoded:
                self._data.notify_all()
        for tp, p in problems:
            self._partition_error(tp, epochs[tp], p)

    def _partition_error(self, tp: TopicPartition, epoch: int, p: Any) -> None:
        exc = error_for_code(p.error_code, p.error_message or str(tp))
        if isinstance(exc, errors.OffsetOutOfRangeError) and self._reset is not None:
            log.info("%s: %s; resetting per auto_offset_reset", tp, exc)
            with self._lock:
                if self._epochs.get(tp) == epoch and tp in self._positions:
                    self._positions[tp] = None
                    self._bump(tp)
            return
        if isinstance(exc, errors.OffsetOutOfRangeError):
            exc = errors.OffsetOutOfRangeError(
                f"{tp}: {exc.message}", earliest=p.log_start_offset, latest=p.high_watermark
            )
        with self._lock:
            if self._epochs.get(tp) != epoch:
                return
            if isinstance(exc, errors.OffsetOutOfRangeError):
                # Stop fetching this partition until the application seeks.
                self._halted.add(tp)
        raise exc
