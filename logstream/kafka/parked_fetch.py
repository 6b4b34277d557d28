"""A one-partition Fetch that waits for an append without a task or a coroutine.

The latency path's common Fetch is a caught-up consumer's long-poll on one partition: it
reads nothing, waits, and is then answered by the Produce that appends there (the
hand-off, ``handoff.py``). Run as the broker's fetch coroutine in a task, each such Fetch
cost a task, four coroutine frames, a future and a timer through ``AppendNotifier.wait``,
and when handed over a ``CancelledError`` unwinding through all of them on a further pass
of the loop. Here it is a registration: the read is made at once in the dispatch (a Fetch
that finds enough data answers synchronously, no task either); one that must wait takes a
waiter slot and leaves a future in the notifier plus a timer, whose callbacks re-read. A
hand-off (or the connection closing) cancels it: the timer cancelled, the registration
dropped, nothing unwinds.

Semantics are :meth:`FetchHandler.fetch`'s, step for step, on the same functions
(``limits``, ``read_marked``): mark then read; answer when the read has ``min_bytes``
(at least 1), an error, or the wait is 0; else take a waiter slot (none free: answer
now); on every wake-up (an append to the partition, a broadcast, the deadline) mark and
read again, and answer when enough is there, or the deadline passed or the notifier
closed, with that last read. Answers above ``INLINE_FETCH_BYTES`` are still converted on
the listener's pool (the listener's ``answer`` callback returns a coroutine for them,
run as the connection's task).

Concurrency: everything here runs on the listener's loop thread; an append from another
thread resolves the future through the notifier's ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from logstream.broker.fetch import FetchHandler, FetchOutcome, FetchSpec
from logstream.broker.notify import Mark
from logstream.kafka.handoff import Handoff, ParkedFetch
from logstream.kafka.wire import Request, ms

if TYPE_CHECKING:
    from logstream.kafka.connection import Answer, KafkaConnection

AnswerOf = Callable[[Request, list[FetchOutcome]], "Answer | Coroutine[Any, Any, Answer]"]


class ParkedRead:
    """A parked one-partition Fetch: the connection's request in hand until it answers
    (:meth:`KafkaConnection.answer_pending`) or is cancelled (hand-off, disconnect)."""

    __slots__ = (
        "_answer",
        "_deadline",
        "_done",
        "_fetch",
        "_future",
        "_handler",
        "_handoff",
        "_keys",
        "_spec",
        "_timer",
        "_total_max",
        "_want",
    )

    def __init__(
        self,
        fetch: ParkedFetch,
        spec: FetchSpec,
        handler: FetchHandler,
        handoff: Handoff,
        answer: AnswerOf,
        total_max: int,
        want: int,
        deadline: float,
    ) -> None:
        self._fetch = fetch
        self._spec = spec
        self._keys = ((spec.topic, spec.partition),)
        self._handler = handler
        self._handoff = handoff
        self._answer = answer
        self._total_max = total_max
        self._want = want
        self._deadline = deadline
        self._future: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._done = False

    def done(self) -> bool:
        return self._done

    def cancel(self) -> bool:
        """Drop the wait (the hand-off answered it, or the connection is gone)."""
        if self._done:
            return False
        self._close()
        return True

    def arm(self, seen: Mark) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._future = future
        if not self._handler.broker.notifier.register(self._keys, seen, future):
            loop.call_soon(self._woken, future)  # moved since the read: read again
            return
        future.add_done_callback(self._woken)
        self._timer = loop.call_later(
            max(self._deadline - time.monotonic(), 0.0), self._woken, future
        )

    def _woken(self, future: asyncio.Future[None]) -> None:
        if self._done or future is not self._future:
            return  # answered or cancelled meanwhile, or a second wake of the same wait
        self._disarm()
        conn = self._fetch.conn
        try:
            seen, outcomes, size, failed = self._handler.read_marked((self._spec,), self._total_max)
            if (
                size >= self._want
                or failed
                or self._deadline - time.monotonic() <= 0
                or self._handler.broker.notifier.closed
            ):
                self._close()
                conn.answer_pending(self, self._answer(self._fetch.req, outcomes))
                return
        except Exception as exc:
            self._close()
            conn.fail_pending(self, exc)
            return
        self.arm(seen)

    def _disarm(self) -> None:
        future, self._future = self._future, None
        if future is not None:
            self._handler.broker.notifier.unregister(self._keys, future)
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _close(self) -> None:
        if self._done:
            return
        self._done = True
        self._disarm()
        self._handler.broker.waiter_slots.release()
        self._handoff.unpark(self._fetch)


def start(
    req: Request,
    conn: KafkaConnection,
    where: tuple[str, int, int, int],
    handler: FetchHandler,
    handoff: Handoff,
    answer: AnswerOf,
) -> Answer | Coroutine[Any, Any, Answer] | ParkedRead:
    """Answer the one-partition Fetch ``req`` (``where``: ``handoff.parkable``'s) now, or
    park it on ``conn`` as a :class:`ParkedRead` registered for the hand-off."""
    topic, partition, offset, min_bytes = where
    body = req.body
    part = body.topics[0].partitions[0]
    spec = FetchSpec(topic, partition, offset, max(int(part.partition_max_bytes), 0))
    total_max, wait_s, want = handler.limits(
        max(ms(body.max_wait), 0), max(int(body.min_bytes), 0), max(int(body.max_bytes), 0)
    )
    seen, outcomes, size, failed = handler.read_marked((spec,), total_max)
    if size >= want or failed or wait_s <= 0:
        return answer(req, outcomes)
    if not handler.broker.waiter_slots.acquire(blocking=False):
        return answer(req, outcomes)
    fetch = ParkedFetch(conn, req, topic, partition, offset, min_bytes)
    parked = ParkedRead(
        fetch, spec, handler, handoff, answer, total_max, want, time.monotonic() + wait_s
    )
    handoff.park(fetch)
    parked.arm(seen)
    return parked
