"""``QueueConsumer``: a member of a queue group (docs/queues.md, Client).

Each fetched :class:`QueueMessage` is settled by the application: ``ack()``, ``nack()``,
``reject()`` or ``extend()``. Settling returns at once: it is queued and sent with the
next fetch (one RPC per poll) or, when no fetch comes, after ``ack_linger_ms`` by a
background thread. Replies (``reply()``, request/reply) ride the next fetch too, ahead of
the settlements, or go out after ``reply_linger_ms`` (client/reply_sender.py).
:meth:`QueueConsumer.commit` sends what is queued and waits until the
broker has it in its state log; it returns the settlements the broker refused (lease ran
out and another member holds the record, already finished, ...) with their named errors,
which are also set on each message (``msg.error``). :meth:`close` commits and leaves the
group: what this member still holds is released to the others at once.

Prefetch (``prefetch=True``, the default; docs/decisions/0036): while fetches come back
full (a backlog), each asks for twice as many polls' worth as the one before, up to
:data:`PREFETCH_MAX_POLLS` (and while an answer is under half of
:data:`PREFETCH_MAX_BYTES`), and the polls after it are served from the buffer without a
request, so a busy worker makes one request (a fetch carrying the acks of all those polls)
per up to 64 polls. A fetch never asks for more than the application handed out, at the
rate observed over the previous fetch, in :data:`PREFETCH_LEASE_SHARE` of the lease, so a
slow handler is not prefetched for. A short answer starts again at one poll's worth; an
answer that says the principal is over its fetch quota does not grow the depth. The
member holds at most ``PREFETCH_MAX_POLLS x max_records``. A prefetched record's lease
runs from its fetch (the lease the broker says it granted, ``QueueFetchResponse.lease_ms``,
so a lease lowered by ``alter_queue_group`` counts), so a poll handing out records fetched
more than half a lease ago, or after the connection dropped (a restarted broker voided
every lease), renews their lease first (one extend request) and leaves out any the broker
no longer counts as this member's: a record whose ack another member had confirmed is
never handed out. A fetched record counts a delivery, so records still buffered at
:meth:`close` come back to the group with one delivery more (as in Kafka share groups);
``prefetch=False`` acquires exactly what each poll asks for. Groups in no-ACK mode
(``auto_ack``) are never prefetched: a record is finished once fetched.

Push (``push=True``; client/queue_push.py, queue_session.py; decision 0037): instead of a
fetch per poll the member keeps one session stream open; the broker pushes records as they
are appended, at most ``max_records`` beyond what polls have handed out, and a poll sends
its replies, settlements and the credit it hands back in one stream message. A request
waits for no poll round trip (request/reply responders). The session's end (close, crash,
lost connection) releases what the member holds at once. Prefetch does not apply.

Security: ``tls``, ``ca``, ``cert``, ``key`` and ``token`` as for the Consumer. A fetch
answer with ``throttle_time_ms`` > 0 (the principal is over its fetch quota) makes the next
fetch (and a ``close()``) wait that long, as the Consumer's does; queued settlements then
wait a linger past the throttle for a poll's fetch to carry them.

Threading: one application thread polls; ``ack`` and friends may be called from any
thread (the pending list has its own lock). Not for use after ``close()``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from logstream import errors
from logstream.client import transport as tr
from logstream.client.queue_message import (
    QueueMessage,
    Reject,
    SettleError,
    decode_partitions,
)
from logstream.client.queue_prefetch import Prefetch, extend_settlements, still_held
from logstream.client.queue_push import PushPolls
from logstream.client.queue_records import PartitionRecords
from logstream.client.queue_settlements import (
    Pending,
    fold_acks,
    hold_unsent,
    merge,
    refusals,
    replies_of,
    settlements,
)
from logstream.client.reply_sender import ReplySender, fail_replies, settle_replies
from logstream.codec import encode_batch, encode_headers
from logstream.protocol import queue_pb2
from logstream.types import Headers

LINGER_WAKE_MIN_MS = 20
"""With ``ack_linger_ms`` at least this long, the linger thread looks for settlements every
``ack_linger_ms`` instead of being woken by the first one: an ack then costs no thread
wake-up, and a settlement still goes out at most ``ack_linger_ms`` after it was queued."""


def _handle(
    msg: QueueMessage, handler: Callable[[QueueMessage], object], nack_delay_ms: int | None
) -> None:
    """One message of :meth:`QueueConsumer.run`: settled by how ``handler`` ended."""
    try:
        handler(msg)
    except Reject as exc:
        msg.reject(reason=str(exc))
    except Exception as exc:
        msg.nack(delay_ms=nack_delay_ms, reason=f"{type(exc).__name__}: {exc}")
    else:
        msg.ack()


class QueueConsumer:
    """A member of queue group ``group`` reading ``topics`` (needed when the group is
    created on first use). See the module docstring."""

    def __init__(
        self,
        bootstrap: str | tr.TransportLike,
        *,
        group: str,
        topics: Sequence[str] = (),
        max_records: int = 100,
        max_wait_ms: int = 500,
        lease_ms: int = 0,
        ack_linger_ms: int = 100,
        reply_linger_ms: float = 1.0,
        create: bool = True,
        client_id: str = "",
        request_timeout_ms: int = 30_000,
        prefetch: bool = True,
        push: bool = False,
        tls: bool = False,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        token: str | None = None,
    ) -> None:
        if min(max_wait_ms, lease_ms, ack_linger_ms, reply_linger_ms) < 0 or max_records < 1:
            raise errors.InvalidRequestError(
                "max_records must be >= 1; max_wait_ms, lease_ms, ack_linger_ms, "
                "reply_linger_ms >= 0"
            )
        self.group = group
        self.member_id = f"{client_id or 'queue'}-{uuid.uuid4().hex}"
        self.max_records = max_records
        self.max_wait_ms = max_wait_ms
        self.lease_ms = lease_ms
        self.ack_linger_ms = ack_linger_ms
        self._owns_transport = isinstance(bootstrap, str)
        self._transport = tr.connect(
            bootstrap, tr.ChannelSecurity.of(tls=tls, ca=ca, cert=cert, key=key, token=token)
        )
        self._timeout = request_timeout_ms / 1000.0
        # One mutex for the queued settlements; the condition over it wakes the linger
        # thread. The ack hot path takes the bare mutex (a C-level lock, no Python frames).
        self._mutex = threading.Lock()
        self._lock = threading.Condition(self._mutex)
        self._pending: Pending = {}
        self._acks: list[PartitionRecords] = []  # with plain acks (their ``ACKED`` rows)
        self._pending_since = 0.0  # when the oldest queued settlement (or ack) was queued
        self._replying = False  # some message got a reply: settlements may wait for it
        self._refused: list[SettleError] = []
        self._send_lock = threading.Lock()  # one settlement-carrying RPC at a time
        # The linger thread waits with no deadline (nothing pending) only when the linger
        # is short (LINGER_WAKE_MIN_MS); only then does a first settlement wake it.
        self._linger_idle = False
        self._wake_linger = ack_linger_ms < LINGER_WAKE_MIN_MS
        self._closed = False
        self._stopping = False
        self._throttled_until = 0.0  # monotonic: no fetch before (the broker's quota)
        resp = self._transport.queue_join(
            queue_pb2.QueueJoinRequest(
                group=group,
                member_id=self.member_id,
                topics=list(topics),
                create=create,
                client_id=client_id,
            ),
            timeout=self._timeout,
        )
        self.topics = list(resp.topics)
        self._runs = resp.offset_runs  # the broker takes and gives offset runs (0042)
        self._lease_ms_granted = resp.settings.lease_ms  # updated by every fetch answer
        self.prefetch = prefetch and not resp.settings.auto_ack
        self._prefetch = Prefetch(self.prefetch)
        self.push = push
        self._push = PushPolls(self, self._transport) if push else None
        self._replies = ReplySender(
            self._transport, timeout=self._timeout, linger_s=reply_linger_ms / 1000.0
        )
        self._linger = threading.Thread(
            target=self._linger_loop, name="logstream-queue-acks", daemon=True
        )
        self._linger.start()

    # ---- settling ------------------------------------------------------------------------

    def _queue_acks(self, records: PartitionRecords) -> None:
        """``records`` has acked rows to send: the first ack of its rows since a request
        last took them (a plain ack itself is only a byte in ``records.state``; the rows
        are folded into ``_pending`` when sent, queue_records.py)."""
        with self._mutex:
            if self._closed:
                raise errors.ClientClosedError("queue consumer closed")
            if not records.ack_queued:
                records.ack_queued = True
                if not self._acks and not self._pending:
                    self._first_settlement()
                self._acks.append(records)

    def _queue_settle(self, msg: QueueMessage, kind: int, **extra: Any) -> None:
        options = (extra.get("delay_ms"), extra.get("reason", ""), extra.get("lease_ms", 0))
        records = msg._records
        key = (records.topic, records.partition, kind, *options)
        with self._mutex:
            if self._closed:
                raise errors.ClientClosedError("queue consumer closed")
            if not self._pending and not self._acks:
                self._first_settlement()
            self._pending.setdefault(key, []).append((records, [msg._row]))

    def _first_settlement(self) -> None:
        """Nothing was queued before this settlement (caller holds the mutex)."""
        self._pending_since = time.monotonic()
        if self._linger_idle and self._wake_linger:
            self._lock.notify_all()

    def _fold_acks(self) -> None:
        """Move the queued plain acks into ``_pending`` (caller holds the mutex)."""
        acks, self._acks = self._acks, []
        fold_acks(acks, self._pending)

    def _take_pending(
        self, *, wait_replies: bool = True, riding: Sequence[Future[None]] = ()
    ) -> tuple[list[queue_pb2.Settlement], Pending]:
        """The queued settlements as protobuf, and the messages behind them. A request is
        settled only once its reply is stored (or failed), or in the same fetch as its
        reply (``riding``: the broker delivers a fetch's replies before its settlements):
        with ``wait_replies`` this waits for the other replies; without, their settlements
        stay queued for a later send (the next poll or the linger thread), so a poll never
        waits for a reply."""
        ride = {id(f) for f in riding}  # futures hash by identity, but id() says it plainly
        with self._lock:
            self._fold_acks()
            pending, self._pending = self._pending, {}
            replying = self._replying
            if not wait_replies and replying:
                held = hold_unsent(pending, ride)
                if held:
                    merge(self._pending, held)
                    self._pending_since = time.monotonic()
                    self._lock.notify_all()
        if replying:
            replies = [f for f in replies_of(pending) if id(f) not in ride]
            if replies:
                futures.wait(replies, timeout=self._timeout)
        return settlements(pending, runs=self._runs), pending

    def _record_results(self, results: Any, sent: Pending) -> None:
        refused = refusals(results, sent)
        if refused:
            with self._lock:
                self._refused.extend(refused)

    def _restore(self, sent: Pending) -> None:
        """A failed send: put its settlements back in front of newer ones."""
        with self._lock:
            self._fold_acks()
            merge(sent, self._pending)
            self._pending = sent
            if sent:
                self._pending_since = time.monotonic()

    def _send_settles(self) -> None:
        with self._send_lock:
            settles, sent = self._take_pending()
            if not settles:
                return
            try:
                resp = self._transport.queue_settle(
                    queue_pb2.QueueSettleRequest(
                        group=self.group, member_id=self.member_id, settle=settles
                    ),
                    timeout=self._timeout,
                )
            except errors.LogstreamError:
                self._restore(sent)
                raise
            self._record_results(resp.results, sent)

    def _linger_loop(self) -> None:
        while True:
            with self._lock:
                idle_wait = None if self._wake_linger else self.ack_linger_ms / 1000.0
                while not self._closed and not self._pending and not self._acks:
                    self._linger_idle = True
                    self._lock.wait(idle_wait)
                self._linger_idle = False
                if self._closed:
                    return
                # A Settle sent while throttled is held by the broker, and one sent the moment
                # the throttle ends races the poll's fetch (whose answer throttles again):
                # the poll gets a linger's time after the throttle to carry them.
                linger_s = self.ack_linger_ms / 1000.0
                due = max(self._pending_since, self._throttled_until) + linger_s
                if (wait := due - time.monotonic()) > 0:
                    self._lock.wait(wait)
                    continue
            try:
                self._send_settles()
            except errors.LogstreamError:
                time.sleep(min(self.ack_linger_ms / 1000.0, 1.0) or 0.05)

    def commit(self) -> list[SettleError]:
        """Send queued settlements and wait until the broker confirmed them; return every
        settlement refused since the last commit (also set as ``msg.error``)."""
        self._send_settles()
        with self._lock:
            refused, self._refused = self._refused, []
        return refused

    # ---- replying ------------------------------------------------------------------------

    def send_reply(self, reply_to: str, value: bytes | None, headers: Headers) -> Future[None]:
        """Queue one reply record for partition 0 of ``reply_to``: the next poll carries it,
        or the reply thread sends it after ``reply_linger_ms`` (reply_sender.py)."""
        if self._closed:
            raise errors.ClientClosedError("queue consumer closed")
        self._replying = True
        batch = encode_batch([value], headers=[encode_headers(headers)])
        return self._replies.send(reply_to, batch)

    # ---- fetching ------------------------------------------------------------------------

    def poll(self, timeout: float = 1.0, max_records: int | None = None) -> list[QueueMessage]:
        """Records acquired for this member (up to ``max_records``), waiting up to
        ``timeout`` seconds for some; queued replies and settlements ride along."""
        if self._closed:
            raise errors.ClientClosedError("queue consumer closed")
        want = max_records or self.max_records
        if len(self._prefetch):
            return self._from_buffer(want)
        if not self._wait_throttle(timeout):
            return []
        if self._push is not None:
            return self._push.poll(timeout, want)
        with self._send_lock:
            replies = self._replies.take()
            settles, sent = self._take_pending(
                wait_replies=False, riding=[f for _, _, f in replies]
            )
            fetched_at = time.monotonic()
            ask = self._prefetch.fetch_size(want, fetched_at, self._lease_s())
            drops = self._transport.connection_drops() if ask > want else 0
            try:
                resp = self._transport.queue_fetch(
                    queue_pb2.QueueFetchRequest(
                        group=self.group,
                        member_id=self.member_id,
                        max_records=ask,
                        max_wait_ms=int(max(timeout, 0) * 1000),
                        lease_ms=self.lease_ms,
                        settle=settles,
                        replies=[queue_pb2.QueueReply(inbox=t, batch=b) for t, b, _ in replies],
                        offset_runs=self._runs,
                    ),
                    timeout=self._timeout + max(timeout, 0),
                )
            except errors.LogstreamError as exc:
                self._restore(sent)
                fail_replies(replies, exc)
                raise
        settle_replies(replies, resp.reply_results)
        if resp.throttle_time_ms > 0:
            self._throttled_until = time.monotonic() + resp.throttle_time_ms / 1000.0
        if resp.lease_ms > 0:
            self._lease_ms_granted = resp.lease_ms
        self._record_results(resp.results, sent)
        return self._prefetch.fetched(
            decode_partitions(resp.records, self),
            want,
            ask,
            at=fetched_at,
            drops=drops,
            lease_s=self._lease_s(),
            throttled=resp.throttle_time_ms > 0,
            backlog=resp.backlog,
            members=resp.members,
        )

    def _lease_s(self) -> float:
        """The lease of the records fetched last, in seconds."""
        return (self.lease_ms or self._lease_ms_granted) / 1000.0

    def _from_buffer(self, want: int) -> list[QueueMessage]:
        """Up to ``want`` buffered records. The buffer's leases are renewed first if half
        a lease ran out since its fetch or the connection dropped meanwhile (a restarted
        broker voided every lease); records the broker refused to renew are left out, and
        a failed renewal empties the buffer (the broker hands those records out again)."""
        p = self._prefetch
        drops = self._transport.connection_drops()
        if p.needs_renewal(drops):
            renewed_at = time.monotonic()
            try:
                kept = self._renew(p.buffer)
            except errors.LogstreamError:
                p.clear()
                raise
            p.renewed(kept, renewed_at, drops, self._lease_s())
        return p.take(want)

    def _renew(self, msgs: list[QueueMessage]) -> list[QueueMessage]:
        """Extend the lease of ``msgs`` now; the ones not renewed (no longer held)."""
        settles = extend_settlements(msgs, self.lease_ms)
        with self._send_lock:
            resp = self._transport.queue_settle(
                queue_pb2.QueueSettleRequest(
                    group=self.group, member_id=self.member_id, settle=settles
                ),
                timeout=self._timeout,
            )
        return still_held(msgs, resp.results)

    def _wait_throttle(self, timeout: float) -> bool:
        """Wait out the broker's fetch throttle (at most ``timeout``); False when it outlasts
        that or the consumer closed (settlements still go, by the linger thread)."""
        left = self._throttled_until - time.monotonic()
        if left <= 0:
            return True
        with self._lock:
            self._lock.wait_for(lambda: self._closed, min(left, max(timeout, 0)))
        return not self._closed and time.monotonic() >= self._throttled_until

    def __iter__(self) -> Iterator[QueueMessage]:
        while not self._closed and not self._stopping:
            batch = self.poll(self.max_wait_ms / 1000.0)
            for i, msg in enumerate(batch):
                if self._stopping:
                    self._prefetch.put_back(batch[i:])
                    return
                yield msg

    def run(
        self,
        handler: Callable[[QueueMessage], object],
        *,
        nack_delay_ms: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Call ``handler`` for every message until ``stop`` is set or :meth:`close`:
        it returns -> ack; raises :class:`Reject` -> reject; raises anything else -> nack
        (after ``nack_delay_ms``, or the group's backoff)."""
        while not self._closed and not (stop is not None and stop.is_set()):
            for msg in self.poll(self.max_wait_ms / 1000.0):
                _handle(msg, handler, nack_delay_ms)

    def stop(self) -> None:
        """End iteration after the current message (records not yet yielded stay held
        until :meth:`close` releases them)."""
        self._stopping = True

    # ---- life cycle ----------------------------------------------------------------------

    def close(self) -> list[SettleError]:
        """Confirm queued settlements, release what this member holds, disconnect.
        Returns the refused settlements (see :meth:`commit`)."""
        if self._closed:
            return []
        refused: list[SettleError] = []
        try:
            self._replies.close(self._timeout)  # replies first: their acks wait for them
            if self._push is not None:
                self._push.finish()
            # the broker would hold the leave until the throttle ends: wait here instead
            throttled = self._throttled_until - time.monotonic()
            if throttled > 0:
                time.sleep(min(throttled, self._timeout))
            with self._send_lock:
                settles, sent = self._take_pending()
                resp = self._transport.queue_leave(
                    queue_pb2.QueueLeaveRequest(
                        group=self.group, member_id=self.member_id, settle=settles
                    ),
                    timeout=self._timeout,
                )
            self._record_results(resp.results, sent)
            with self._lock:
                refused, self._refused = self._refused, []
        finally:
            with self._lock:
                self._closed = True
                self._lock.notify_all()
            self._linger.join(5)
            if self._owns_transport:
                self._transport.close()
        return refused

    def __enter__(self) -> QueueConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
