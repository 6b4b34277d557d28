"""The consumer's reader: follows the assigned partitions and queues decoded batches.

Prefetching: a background thread (``logstream-consumer-fetcher``) follows every assigned,
unpaused partition with a known position on one server-streaming ``Subscribe`` call (the
broker pushes batches as they are appended; with ``fetch_min_bytes`` > 1 it long-polls
``Fetch`` with ``fetch_max_wait_ms`` instead, since Subscribe has no minimum size), decodes
whole batches into :class:`~logstream.client.chunks.Chunk` objects and queues them
(:func:`~logstream.client.fetch_answer.absorb_answer`) in the
:class:`~logstream.client.subscription.SubscriptionState` (bounded by ``max_buffer_bytes``),
so the next data is on its way while the application processes. Every chunk carries its
partition's epoch; a seek, pause or assign bumps it and cancels the in-flight call (through
:meth:`Fetcher.cancel_inflight`), which makes older chunks stale.

Iteration (``for record in consumer``) reads differently: while the loop waits for records,
the iterating thread drives the same reading itself (:meth:`Fetcher.read_direct`: its own
``Subscribe`` stream, asking the broker for a heartbeat every ``fetch_max_wait_ms`` when
idle) and the prefetch thread stands by. A record then reaches the loop without a hand-over
between threads, which is ~0.25 ms of end-to-end latency at low rates on a busy 2-core
machine (docs/performance.md, Latency). A ``poll`` called while an iteration is suspended
hands reading back to the prefetch thread (:meth:`Fetcher.end_direct`).

Concurrency: everything shared lives in the state and is guarded by its lock; the fetcher's
own fields (the in-flight call, the direct-reading owner) are guarded by the same lock.
:meth:`Fetcher.wait_parked` and :meth:`Fetcher.wait_idle` let tests wait for those states
(``logstream.testing.consumer``) instead of sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from logstream import errors
from logstream.client.fetch_answer import absorb_answer
from logstream.client.offsets import OffsetLookup
from logstream.client.subscription import SubscriptionState
from logstream.client.transport_api import PendingCall, StreamCall, TransportLike
from logstream.protocol import log_pb2
from logstream.types import TopicPartition

log = logging.getLogger("logstream.client.consumer")

UNKNOWN_TOPIC_GRACE_S = 1.0
"""How long an assigned partition's topic may be missing before ``poll`` raises
``UnknownTopicOrPartitionError`` (then once per this period while it stays missing)."""


class FetchSettings:
    """The consumer's fetch configuration, in the units the fetcher uses."""

    __slots__ = (
        "backoff",
        "max_bytes",
        "max_wait_ms",
        "min_bytes",
        "partition_max_bytes",
        "timeout",
        "verify",
    )

    def __init__(
        self,
        *,
        max_wait_ms: int,
        min_bytes: int,
        max_bytes: int,
        partition_max_bytes: int,
        verify: bool,
        timeout: float,
        backoff: float,
    ) -> None:
        self.max_wait_ms = max_wait_ms
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.partition_max_bytes = partition_max_bytes
        self.verify = verify
        self.timeout = timeout
        self.backoff = backoff


class _DirectStream:
    """The iterating thread's own Subscribe stream (see the module docstring)."""

    __slots__ = ("call", "epochs", "generation", "offsets", "responses", "retry_at")

    def __init__(
        self,
        call: StreamCall[log_pb2.FetchResponse],
        epochs: dict[TopicPartition, int],
        offsets: dict[TopicPartition, int],
        generation: int,
    ) -> None:
        self.call = call
        self.responses = iter(call)
        self.retry_at: float | None = None  # a missing topic's reset is retried then
        self.epochs = epochs
        self.offsets = offsets
        self.generation = generation


class Fetcher:
    """Reads for one consumer: a prefetch thread, or the iterating thread while it waits.
    Depends on the subscription state and the transport only."""

    def __init__(
        self,
        state: SubscriptionState,
        transport: TransportLike,
        settings: FetchSettings,
        offsets: OffsetLookup,
    ) -> None:
        self._state = state
        self._transport = transport
        self._settings = settings
        self._offsets = offsets
        # Subscribe has no min_bytes: a consumer asking for bigger answers long-polls Fetch.
        self._use_subscribe = settings.min_bytes <= 1
        self._inflight: PendingCall[Any] | StreamCall[Any] | None = None
        self._unreachable_since: float | None = None
        self._direct_owner: object | None = None
        self._direct: _DirectStream | None = None
        self._busy = False
        self._idle = threading.Condition(state.lock)
        self._parked = threading.Condition(state.lock)  # a call went in flight (for tests)
        state.control = self
        self._thread = threading.Thread(
            target=self._run, name="logstream-consumer-fetcher", daemon=True
        )
        self._thread.start()

    # -- FetchControl (called by the state, without its lock) ---------------------------------

    def cancel_inflight(self) -> None:
        call = self._inflight
        if call is not None:
            try:
                call.cancel()
            except Exception:
                pass

    def interrupt(self) -> None:
        if self._direct_owner is not None:
            self._state.cancel_inflight()

    # -- for tests ----------------------------------------------------------------------------

    def wait_parked(self, *, direct: bool = False, timeout: float = 10.0) -> bool:
        """Wait until a fetch call or stream is in flight (the reader is parked on the
        network); with ``direct``, the iterating thread's own stream. False on timeout."""
        with self._state.lock:
            return self._parked.wait_for(lambda: self._is_parked(direct), timeout)

    def _is_parked(self, direct: bool) -> bool:
        """Lock held."""
        if self._inflight is None:
            return False
        return not direct or (self._direct is not None and self._inflight is self._direct.call)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until the prefetch thread waits for work (nothing to fetch, the buffer full,
        or an iteration reading). False on timeout."""
        with self._state.lock:
            return self._idle.wait_for(lambda: not self._busy, timeout)

    # -- the prefetch thread ------------------------------------------------------------------

    def join(self, timeout: float | None) -> None:
        """Wait for the prefetch thread to end (after ``state.close()``)."""
        self._thread.join(timeout)

    def _run(self) -> None:
        state = self._state
        while True:
            with state.lock:
                self._busy = False
                self._idle.notify_all()
                while True:
                    if state.closed:
                        return
                    if self._direct_owner is not None:  # an iteration reads the stream
                        state.work.wait()
                        continue
                    need_reset = state.needs_reset()
                    fetchable = state.fetchable()
                    if need_reset or fetchable:
                        break
                    state.work.wait()
                epochs = {tp: state.epochs[tp] for tp in fetchable}
                self._busy = True
            try:
                if need_reset:
                    self._reset_or_fetch_the_others(need_reset, fetchable, epochs)
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

    def _reset_or_fetch_the_others(
        self,
        need_reset: list[TopicPartition],
        fetchable: list[TopicPartition],
        epochs: dict[TopicPartition, int],
    ) -> None:
        """Resolve the positions ``need_reset`` lacks. While a topic among them is missing
        (told by ``_on_error`` after its grace), the partitions with a position are read
        by one long-poll Fetch per retry: a Subscribe stream would not come back to retry,
        and waiting would stop them all for one missing topic."""
        try:
            self._offsets.resolve_reset(need_reset)
        except errors.UnknownTopicOrPartitionError as exc:
            if not fetchable:
                raise
            self._on_error(exc)
            self._fetch(fetchable, epochs)

    def _on_error(self, exc: errors.LogstreamError) -> None:
        now = time.monotonic()
        surface = True
        if exc.retriable:
            # Broker unreachable or restarting: keep retrying quietly, but tell the
            # application if it lasts longer than request_timeout_ms. A topic the broker
            # says does not exist is an answer, not silence: told after a short grace (a
            # topic being created right now), like the producer's few quick retries, then
            # once per grace while it stays missing (reading starts if it is created).
            grace = self._settings.timeout
            if isinstance(exc, errors.UnknownTopicOrPartitionError):
                grace = min(grace, UNKNOWN_TOPIC_GRACE_S)
            if self._unreachable_since is None:
                self._unreachable_since = now
            surface = now - self._unreachable_since >= grace
            if surface:
                self._unreachable_since = now
        if surface:
            self._state.push_error(exc)
        with self._state.lock:
            if not self._state.closed:
                self._state.work.wait(self._settings.backoff)

    def _partitions(
        self, tps: list[TopicPartition], offsets: dict[TopicPartition, int]
    ) -> list[log_pb2.FetchPartition]:
        return [
            log_pb2.FetchPartition(
                topic=tp.topic,
                partition=tp.partition,
                offset=offsets[tp],
                max_bytes=self._settings.partition_max_bytes,
            )
            for tp in tps
        ]

    def _went_in_flight(self, call: PendingCall[Any] | StreamCall[Any]) -> None:
        """Lock held: ``call`` is the one to cancel now."""
        self._inflight = call
        self._parked.notify_all()

    def _fetch(self, tps: list[TopicPartition], epochs: dict[TopicPartition, int]) -> None:
        """One long-poll Fetch of ``tps`` (``fetch_min_bytes`` > 1)."""
        state, s = self._state, self._settings
        with state.lock:
            offsets = {tp: state.fetch_offsets[tp] for tp in tps}
        req = log_pb2.FetchRequest(
            max_wait_ms=s.max_wait_ms,
            min_bytes=s.min_bytes,
            max_bytes=s.max_bytes,
            partitions=self._partitions(tps, offsets),
        )
        call = self._transport.fetch(req, timeout=s.timeout + s.max_wait_ms / 1000.0)
        with state.lock:
            self._went_in_flight(call)
            stale = state.closed or any(state.epochs.get(tp) != e for tp, e in epochs.items())
        if stale:  # a seek/assign/close raced with building the request
            call.cancel()
        try:
            resp = call.result()
        finally:
            self._inflight = None
        try:
            absorb_answer(self._state, resp, epochs, offsets, verify=self._settings.verify)
        finally:
            if resp.throttle_time_ms > 0:
                self._wait_throttle(resp.throttle_time_ms / 1000.0)

    def _wait_throttle(self, seconds: float) -> None:
        """The broker said the principal is over a fetch quota: send the next fetch only
        after ``seconds`` (as Kafka's consumer does), unless the consumer closes."""
        state = self._state
        deadline = time.monotonic() + seconds
        with state.lock:
            while not state.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                state.work.wait(left)

    def _stream(self, tps: list[TopicPartition], epochs: dict[TopicPartition, int]) -> None:
        """Follow ``tps`` on one ``Subscribe`` stream until a seek/assign/pause/resume/close
        cancels it, the buffer fills up, or it fails. The broker pushes each append as it
        lands: no request per answer, no re-issued long poll (docs/performance.md, Latency)."""
        state = self._state
        with state.lock:
            offsets = {tp: state.fetch_offsets[tp] for tp in tps}
            generation = state.generation
        req = log_pb2.SubscribeRequest(
            max_bytes=self._settings.max_bytes, partitions=self._partitions(tps, offsets)
        )
        call = self._transport.subscribe(req)
        with state.lock:
            self._went_in_flight(call)
            stale = (
                state.closed
                or state.generation != generation
                or self._direct_owner is not None
                or any(state.epochs.get(tp) != e for tp, e in epochs.items())
            )
        if stale:  # a seek/assign/close raced with opening the stream
            call.cancel()
        ended = True
        try:
            for resp in call:
                full = absorb_answer(state, resp, epochs, offsets, verify=self._settings.verify)
                self._unreachable_since = None  # only an answer without error: see _on_error
                if full:
                    ended = False  # the buffer is full: wait for room before reading on
                    break
        except errors.LogstreamError:
            if state.closed or state.generation != generation:
                return  # cancelled on purpose: the caller's loop starts the next stream
            raise
        finally:
            self._inflight = None
            call.cancel()  # a no-op when the stream is already over
        if ended and not (state.closed or state.generation != generation):
            # The broker ended the stream (shutting down): do not re-subscribe in a hot loop.
            with state.lock:
                state.work.wait(self._settings.backoff)

    # -- iteration: the application thread reads its own stream -------------------------------

    @property
    def streams(self) -> bool:
        """True when iteration may read on its own thread (Subscribe, not long-poll Fetch)."""
        return self._use_subscribe

    def begin_direct(self, token: object) -> None:
        """Make the iterating thread the stream's reader: the prefetcher stops and waits."""
        state = self._state
        with state.lock:
            self._direct_owner = token
            state.work.notify_all()  # cut a prefetcher's retry backoff short
        state.cancel_inflight()
        with state.lock:
            while self._busy and not state.closed:
                self._idle.wait(0.1)

    def owns_direct(self, token: object) -> bool:
        return self._direct_owner is token

    @property
    def direct_active(self) -> bool:
        return self._direct_owner is not None

    def end_direct(self, token: object | None = None) -> bool:
        """Hand reading back to the prefetch thread (``token``: only if that iteration still
        owns it; without one, a ``poll`` takes over mid-iteration). False when nothing was
        handed back."""
        if self._direct_owner is None or (token is not None and self._direct_owner is not token):
            return False
        self._drop_direct()
        with self._state.lock:
            self._direct_owner = None
            self._state.work.notify()
        return True

    def _drop_direct(self) -> None:
        d, self._direct = self._direct, None
        if d is not None:
            if self._inflight is d.call:
                self._inflight = None
            d.call.cancel()

    def read_direct(self) -> bool:
        """Wait on this thread for the next message of the iteration's stream (opening it
        first when needed) and queue its records. False once the consumer is closed."""
        state = self._state
        d = self._direct
        if d is not None and state.generation != d.generation:
            self._drop_direct()  # a seek/pause/assign/group change since it was opened
            d = None
        if d is None:
            d = self._open_direct()
            if d is None:
                return not state.closed
        try:
            resp = next(d.responses)
        except StopIteration:
            self._drop_direct()
            # The broker ended the stream (shutting down): do not re-subscribe in a hot loop.
            with state.lock:
                if not state.closed:
                    state.work.wait(self._settings.backoff)
            return not state.closed
        except errors.LogstreamError as exc:
            self._drop_direct()
            if state.closed:
                return False
            if state.generation != d.generation:
                return True  # cancelled on purpose: the next call opens a new stream
            self._on_error(exc)
            return not state.closed
        try:
            absorb_answer(self._state, resp, d.epochs, d.offsets, verify=self._settings.verify)
        except errors.LogstreamError as exc:
            self._drop_direct()
            self._on_error(exc)
        else:
            if d.retry_at is None:
                self._unreachable_since = None
            elif time.monotonic() >= d.retry_at:  # (a heartbeat comes every max_wait_ms)
                self._drop_direct()  # the next call retries the missing topic's reset
        return not state.closed

    def _open_direct(self) -> _DirectStream | None:
        """Open the iteration's Subscribe stream over every fetchable partition; None when
        there was nothing to follow yet (a reset resolved, or a wait for a change)."""
        state = self._state
        with state.lock:
            if state.closed:
                return None
            need_reset = state.needs_reset()
            if not need_reset and not state.fetchable():
                # Nothing to read (all paused, no assignment yet): wait for a group change.
                state.data.wait(self._settings.max_wait_ms / 1000.0)
                return None
        retry_at = None
        if need_reset:
            try:
                self._offsets.resolve_reset(need_reset)
                return None
            except errors.LogstreamError as exc:
                self._on_error(exc)
                if not isinstance(exc, errors.UnknownTopicOrPartitionError):
                    return None
            # a missing topic: read the others meanwhile (_reset_or_fetch_the_others)
            retry_at = time.monotonic() + UNKNOWN_TOPIC_GRACE_S
        with state.lock:
            if state.closed:
                return None
            fetchable = state.fetchable()
            if not fetchable:
                return None
            epochs = {tp: state.epochs[tp] for tp in fetchable}
            offsets = {tp: state.fetch_offsets[tp] for tp in fetchable}
            generation = state.generation
        req = log_pb2.SubscribeRequest(
            max_bytes=self._settings.max_bytes,
            partitions=self._partitions(fetchable, offsets),
            heartbeat_ms=self._settings.max_wait_ms,
        )
        try:
            call = self._transport.subscribe(req)
        except errors.ClientClosedError:  # the transport was closed under us by close()
            return None
        except errors.LogstreamError as exc:
            self._on_error(exc)
            return None
        d = self._direct = _DirectStream(call, epochs, offsets, generation)
        d.retry_at = retry_at
        with state.lock:
            self._went_in_flight(call)
            stale = state.closed or state.generation != generation
        if stale:  # a close or group change raced with opening the stream
            call.cancel()
        return d
