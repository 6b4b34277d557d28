"""A queue member's push session, the client side of ``Queue/Session`` (decision 0037).

``QueueConsumer(push=True)`` opens one bidirectional stream instead of polling with unary
fetches. The member grants the broker credit (``window`` records at the start, then one
more for each record a poll hands to the application); the broker acquires records for
the member and pushes them as soon as they are appended, so a request waits for no poll
round trip. A poll sends what it has in one stream message (replies first, then the
settlements, then the credit it gives back) and takes records from the pushed buffer.

Answers come back in order: each names how many messages it answers; the reader thread
pops that many from the sent list and resolves their replies' futures and records their
refused settlements (the consumer's callback). When the stream fails, every reply still
waiting for its answer fails with that error and the next :meth:`PushSession.take` raises
it (the consumer opens a new session on its next poll). The broker releases everything the
member held when the stream ended, so the group hands those records out again
(at-least-once, as after a lease ran out).

Threading: ``send`` and ``take`` from any thread (one lock); the reader thread is the only
one reading the stream; gRPC's own thread drains the outgoing queue.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

from logstream import errors
from logstream.client import transport as tr
from logstream.client.queue_message import MessageOwner, QueueMessage, decode_records
from logstream.client.reply_sender import fail_replies, settle_replies
from logstream.protocol import queue_pb2

Reply = tuple[str, bytes, "Future[None]"]
OnResults = Callable[[Any, Any], None]
"""(refused ``SettleResult`` messages, what was sent) -> None."""


class PushSession:
    """One open session; see the module docstring."""

    def __init__(
        self,
        transport: tr.TransportLike,
        *,
        group: str,
        member_id: str,
        lease_ms: int,
        window: int,
        owner: MessageOwner,
        on_results: OnResults,
        on_throttle: Callable[[int], None],
    ) -> None:
        self.group, self.member_id = group, member_id
        self._owner = owner
        self._on_results = on_results
        self._on_throttle = on_throttle
        self._cond = threading.Condition()
        self._buffer: deque[tuple[QueueMessage, float]] = deque()  # + monotonic push time
        # sent messages waiting for their answer: replies, what the caller sent, answered
        self._sent: deque[tuple[list[Reply], Any, Future[None]]] = deque()
        self._broken: errors.LogstreamError | None = None
        self._ended = False
        self._outgoing: queue.SimpleQueue[queue_pb2.QueueSessionRequest | None]
        self._outgoing = queue.SimpleQueue()
        self._sent.append(([], None, Future()))  # the opening message is answered too
        self._outgoing.put(
            queue_pb2.QueueSessionRequest(
                group=group, member_id=member_id, credit=window, lease_ms=lease_ms
            )
        )
        self._call = transport.queue_session(self._requests())
        self._reader = threading.Thread(
            target=self._read_loop, name="logstream-queue-session", daemon=True
        )
        self._reader.start()

    def _requests(self) -> Iterator[queue_pb2.QueueSessionRequest]:
        while (message := self._outgoing.get()) is not None:
            yield message

    # ---- sending ---------------------------------------------------------------------------

    def send(
        self,
        *,
        credit: int = 0,
        settle: Sequence[queue_pb2.Settlement] = (),
        replies: Sequence[Reply] = (),
        sent: Any = None,
        flush: bool = False,
    ) -> Future[None]:
        """Queue one message for the stream (returns at once). Its replies' futures are
        resolved by its answer; ``sent`` goes to the results callback with its refusals;
        the future returned is done when the message is answered (failed if it never
        will be)."""
        message = queue_pb2.QueueSessionRequest(
            group=self.group,
            member_id=self.member_id,
            credit=credit,
            settle=settle,
            replies=[queue_pb2.QueueReply(inbox=t, batch=b) for t, b, _ in replies],
            flush=flush,
        )
        with self._cond:
            if self._broken is not None or self._ended:
                fail_replies(replies, self._broken or errors.ClientClosedError("session ended"))
                raise self._broken or errors.ClientClosedError("session ended")
            answered: Future[None] = Future()
            self._sent.append((list(replies), sent, answered))
            self._outgoing.put(message)
        return answered

    # ---- receiving -------------------------------------------------------------------------

    def _read_loop(self) -> None:
        error: errors.LogstreamError
        try:
            for response in self._call:
                self._absorb(response)
            error = errors.BrokerNotAvailableError("the broker ended the queue session")
        except errors.LogstreamError as exc:
            error = exc
        except Exception as exc:  # never leave waiters hanging on a bug
            error = errors.UnknownServerError(f"queue session failed: {exc!r}")
        with self._cond:
            self._broken = self._broken or error
            unanswered = list(self._sent)
            self._sent.clear()
            self._cond.notify_all()
        for replies, _, answered in unanswered:
            fail_replies(replies, error)
            answered.set_exception(error)

    def _absorb(self, response: queue_pb2.QueueSessionResponse) -> None:
        if response.answered:
            with self._cond:
                answered = [self._sent.popleft() for _ in range(response.answered)]
            replies = [r for rs, _, _ in answered for r in rs]
            if replies:
                settle_replies(replies, response.reply_results)
            self._on_results(response.results, [sent for _, sent, _ in answered])
            for _, _, done in answered:
                done.set_result(None)
        if response.throttle_time_ms > 0:
            self._on_throttle(response.throttle_time_ms)
        if response.records:
            got = decode_records(response.records, self._owner)
            now = time.monotonic()
            with self._cond:
                self._buffer.extend((m, now) for m in got)
                self._cond.notify_all()

    def take(self, want: int, timeout: float) -> tuple[list[QueueMessage], float]:
        """Up to ``want`` pushed records, waiting up to ``timeout`` s for the first; and when
        the oldest of them was pushed (monotonic). Raises the session's failure once its
        buffer is empty."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while not self._buffer and self._broken is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return [], 0.0
                self._cond.wait(left)
            if not self._buffer:
                raise self._broken  # type: ignore[misc]
            oldest = self._buffer[0][1]
            n = min(want, len(self._buffer))
            return [self._buffer.popleft()[0] for _ in range(n)], oldest

    @property
    def broken(self) -> bool:
        return self._broken is not None

    # ---- ending ----------------------------------------------------------------------------

    def finish(self, settle: Sequence[queue_pb2.Settlement], sent: Any, timeout: float) -> None:
        """Send the last settlements, wait for their answer, end the stream (the broker then
        releases what the member still holds) and wait for the reader. Raises when the
        stream failed before the settlements were answered."""
        deadline = time.monotonic() + timeout
        try:
            if settle:
                answered = self.send(settle=settle, sent=sent, flush=True)
                try:
                    answered.result(timeout)
                except TimeoutError:
                    raise errors.RequestTimedOutError("queue session did not answer") from None
        finally:
            self.close(max(deadline - time.monotonic(), 0.1))

    def close(self, timeout: float = 5.0) -> None:
        """End the stream now; records still buffered go back to the group."""
        with self._cond:
            self._ended = True
        self._outgoing.put(None)
        self._reader.join(timeout)
        if self._reader.is_alive():
            self._call.cancel()
            self._reader.join(timeout)
