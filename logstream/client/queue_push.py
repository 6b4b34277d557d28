"""The push side of a ``QueueConsumer(push=True)``: its session, and what a poll does.

:class:`PushPolls` owns the member's :class:`~logstream.client.queue_session.PushSession`
(opened on the first poll, opened again after it failed) and the credit the member owes
the broker: one record for each record a poll handed to the application. A poll sends the
queued replies, the settlements (those whose reply rides along or is stored already) and
that credit in one stream message, then takes pushed records. ``finish`` sends the last
settlements on the session and ends it.

Threading: called by the consumer's polling thread, and by ``close()``; the consumer's
send lock orders the messages with its other settlement-carrying requests.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from logstream import errors
from logstream.client import transport as tr
from logstream.client.queue_message import MessageOwner, QueueMessage
from logstream.client.queue_session import PushSession
from logstream.client.queue_settlements import Pending, merge


class PushOwner(MessageOwner, Protocol):
    """What :class:`PushPolls` uses of its ``QueueConsumer``."""

    group: str
    member_id: str
    max_records: int
    lease_ms: int
    _timeout: float
    _throttled_until: float
    _send_lock: Any
    _replies: Any

    def _take_pending(self, *, wait_replies: bool = ..., riding: Any = ...) -> Any: ...

    def _record_results(self, results: Any, sent: Any) -> None: ...

    def _restore(self, sent: Any) -> None: ...

    def _renew(self, msgs: list[QueueMessage]) -> list[QueueMessage]: ...

    def _lease_s(self) -> float: ...


class PushPolls:
    def __init__(self, owner: PushOwner, transport: tr.TransportLike) -> None:
        self._owner = owner
        self._transport = transport
        self._session: PushSession | None = None
        self._credit_due = 0  # records handed out since the session last got credit back

    def _open(self) -> PushSession:
        if self._session is not None and not self._session.broken:
            return self._session
        if self._session is not None:
            self._session.close(0.1)
        o = self._owner
        self._credit_due = 0
        self._session = PushSession(
            self._transport,
            group=o.group,
            member_id=o.member_id,
            lease_ms=o.lease_ms,
            window=o.max_records,
            owner=o,
            on_results=self._results,
            on_throttle=self._throttle,
        )
        return self._session

    def _results(self, results: Any, sent: list[Any]) -> None:
        merged: Pending = {}
        for part in sent:
            merge(merged, part or {})
        self._owner._record_results(results, merged)

    def _throttle(self, ms: int) -> None:
        self._owner._throttled_until = time.monotonic() + ms / 1000.0

    def poll(self, timeout: float, want: int) -> list[QueueMessage]:
        """Queued replies, settlements and the credit for the records handed out since go
        up in one message, then up to ``want`` pushed records (waiting up to ``timeout``
        for the first). A failed session raises once; the next poll opens a new one (the
        broker released what the old one held)."""
        o = self._owner
        session = self._open()
        with o._send_lock:
            replies = o._replies.take()
            settles, sent = o._take_pending(wait_replies=False, riding=[f for _, _, f in replies])
            credit, self._credit_due = self._credit_due, 0
            if replies or settles or credit:
                try:
                    session.send(credit=credit, settle=settles, replies=replies, sent=sent)
                except errors.LogstreamError:
                    o._restore(sent)
                    raise
        got, pushed_at = session.take(want, timeout)
        self._credit_due += len(got)
        lease_s = o._lease_s()
        if got and lease_s and time.monotonic() - pushed_at > lease_s / 2:
            got = o._renew(got)
        return got

    def finish(self) -> None:
        """The last settlements go on the session, then it ends (the broker releases the
        rest); if the session cannot take them, they stay queued for the Leave."""
        session, self._session = self._session, None
        if session is None:
            return
        o = self._owner
        with o._send_lock:
            settles, sent = o._take_pending()
            try:
                session.finish(settles, sent, o._timeout)
            except errors.LogstreamError:
                o._restore(sent)
