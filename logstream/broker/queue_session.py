"""``Queue/Session``: a queue member's push session (docs/decisions/0037).

One bidirectional stream per member. The member grants *credit* (records the broker may
push); the broker acquires records for it (under a lease, exactly as a Fetch does, with
the acquisition in ``__queue_state`` before the records are sent) and pushes them as soon
as they are appended, without waiting for a request. Each message from the member may
carry more credit, replies (handed to their inboxes before that message's settlements, so
an ack never lands without its reply: decision 0035) and settlements.

Answers: the broker answers the member's messages in order. An answer says how many
messages it covers (``answered``) and carries one ``QueueReplyResult`` per reply they
carried and their refused settlements. Replies go to their inboxes as soon as their
message is read; its settlements follow on the session's next pass. A message wakes the
session only when it must act now (``flush``, or credit while it has none): a responder's
ack waits for the next append's pass and is applied in the same engine call and
``__queue_state`` append as that acquire (one pass per request instead of two). The answer
rides the next push, or goes alone :data:`ANSWER_LINGER_S` after its message arrived, or
at once for a message with ``flush`` set.

Credit: ``credit`` left = granted - pushed. The broker never pushes more than that, so a
member holds at most what it granted beyond what it has handed back as new credit.

Leases and disconnects: pushed records are leased as fetched ones are (redelivered when
the lease runs out). When the stream ends for any reason (member closed it, connection
lost, process killed, broker shutting down) the member leaves the group: everything it
still holds is released to the other members at once.

Concurrency: one coroutine per session on the server's event loop, plus a reader task
that drains the request stream into a deque and resolves the session's wake-up future;
the session waits on the broker's :class:`~logstream.broker.notify.AppendNotifier` for the
group's partitions (only while it has credit) and on that future, whichever comes first.
Queue engine calls are inline (one group lock and one state append each), as in Fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from logstream.broker.broker import Broker
from logstream.broker.inboxes import Inboxes
from logstream.broker.queue_messages import (
    MAX_REQUEST_RUN_RECORDS,
    deliver_replies,
    records_pb,
    settle_results,
    settles,
)
from logstream.broker.queue_settle import Settle, merge_acks
from logstream.broker.queues import QueueManager
from logstream.errors import InvalidRequestError, LogstreamError
from logstream.protocol import queue_pb2

ANSWER_LINGER_S = 0.005
"""How long an answer waits for a push to ride on before it is sent alone."""
MAX_PUSH_RECORDS = 500
"""Records acquired per push at most (more credit: several pushes in a row)."""
MAX_CREDIT = 1_000_000
"""Credit a member may have outstanding."""
IDLE_CHECK_S = 1.0
"""A session with nothing to do looks again this often: the group's partitions may have
changed and the member stays counted as seen."""


class _Inbound:
    """The member's messages read so far (each with the results of its replies, which the
    reader hands to their inboxes as it reads them: a reply is not kept waiting for the
    session's next pass, and the time it arrived), and the session's wake-up future.

    Only a message the session must act on now wakes it (``urgent``): one asking for its
    answer at once (``flush``), or credit while the session has none. Settlements and
    credit on top of credit wait for the session's next pass (the next append, or their
    answer's linger), so a responder's ack costs no pass of its own: it is applied in the
    same engine call and ``__queue_state`` append as the next acquire."""

    def __init__(self, inboxes: Inboxes) -> None:
        self.inboxes = inboxes
        self.messages: deque[tuple[Any, list[queue_pb2.QueueReplyResult], float]] = deque()
        self.ended = False
        self.error: BaseException | None = None
        self.wake: asyncio.Future[None] | None = None
        self.starved = True  # set by the session: it has no credit left
        self.urgent = False
        self.linger: asyncio.TimerHandle | None = None  # wakes the session for an answer

    def drain(self) -> deque[tuple[Any, list[queue_pb2.QueueReplyResult], float]]:
        """The messages read so far, for the session's pass (which answers them)."""
        taken, self.messages = self.messages, deque()
        self.urgent = False
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        return taken

    def poke(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def take(self, message: Any) -> None:
        _check(message)
        replied = deliver_replies(self.inboxes, message.replies) if message.replies else []
        self.messages.append((message, replied, time.monotonic()))
        if message.flush or (message.credit and self.starved):
            self.urgent = True

    async def read(self, requests: AsyncIterator[Any], group: str, member: str) -> None:
        try:
            async for message in requests:
                if message.group != group or message.member_id != member:
                    raise InvalidRequestError(
                        "a session's messages must all name the same group and member_id"
                    )
                self.take(message)
                if self.urgent:
                    self.poke()
                elif self.linger is None:  # the answer is due in ANSWER_LINGER_S at most
                    loop = asyncio.get_running_loop()
                    self.linger = loop.call_later(ANSWER_LINGER_S, self.poke)
        except Exception as exc:  # raised by the session, after what came before it
            self.error = exc
        self.ended = True
        self.poke()

    def due(self) -> float:
        """When the oldest message read must be answered (monotonic; inf: none waiting)."""
        return self.messages[0][2] + ANSWER_LINGER_S if self.messages else float("inf")


def _check(message: Any) -> None:
    if not message.group or not message.member_id:
        raise InvalidRequestError("a session's messages need group and member_id")
    if message.credit < 0 or message.lease_ms < 0:
        raise InvalidRequestError("credit and lease_ms must be >= 0")


class _Answer:
    """What the next answer carries (the member's messages processed since the last)."""

    def __init__(self) -> None:
        self.answered = 0
        self.reply_results: list[queue_pb2.QueueReplyResult] = []
        self.results: list[queue_pb2.SettleResult] = []
        self.due = 0.0  # monotonic; 0: nothing to answer
        self.now = False  # a message asked for its answer at once

    def response(self, pushed: list[queue_pb2.QueueRecords]) -> queue_pb2.QueueSessionResponse:
        return queue_pb2.QueueSessionResponse(
            records=pushed,
            answered=self.answered,
            reply_results=self.reply_results,
            results=self.results,
        )


async def serve_session(
    broker: Broker, queues: QueueManager, requests: AsyncIterator[Any]
) -> AsyncIterator[queue_pb2.QueueSessionResponse]:
    """Run one member's session until its stream ends; see the module docstring."""
    first = await anext(aiter(requests), None)
    if first is None:
        return
    _check(first)
    name, member = first.group, first.member_id
    queues.partition_keys(name)  # an unknown group ends the stream with its error now
    inbound = _Inbound(broker.inboxes)
    inbound.take(first)
    reader = asyncio.create_task(inbound.read(requests, name, member), name="queue-session")
    try:
        async for response in _push_loop(broker, queues, inbound, name, member):
            yield response
    finally:
        reader.cancel()
        try:
            with broker.operation():
                queues.leave(name, member, [])
        except LogstreamError:
            pass  # the group was deleted, or the broker is closing: nothing is held


async def _push_loop(
    broker: Broker, queues: QueueManager, inbound: _Inbound, name: str, member: str
) -> AsyncIterator[queue_pb2.QueueSessionResponse]:
    loop = asyncio.get_running_loop()
    notifier = broker.notifier
    credit = 0
    lease: int | None = None
    answer = _Answer()
    while not notifier.closed:
        pending: list[Settle] = []
        budget = [MAX_REQUEST_RUN_RECORDS]  # one for all the messages settled in this pass
        for message, replied, arrived in inbound.drain():
            credit = min(credit + message.credit, MAX_CREDIT)
            lease = message.lease_ms or lease
            answer.reply_results.extend(replied)
            pending.extend(settles(message.settle, budget))
            answer.answered += 1
            answer.now = answer.now or message.flush
            answer.due = answer.due or arrived + ANSWER_LINGER_S
        keys = queues.partition_keys(name)
        seen = notifier.mark(keys)
        take = min(credit, MAX_PUSH_RECORDS)
        pushed: list[queue_pb2.QueueRecords] = []
        with broker.operation():
            outcomes, deliveries, _ = queues.acquire(name, member, merge_acks(pending), take, lease)
            if deliveries:
                pushed = records_pb(queues, name, deliveries)
        answer.results.extend(settle_results(outcomes))
        delivered = sum(len(d.offsets) for d in deliveries)
        credit -= delivered
        inbound.starved = not credit  # before the yield: the reader runs meanwhile
        if pushed or (answer.answered and (answer.now or time.monotonic() >= answer.due)):
            yield answer.response(pushed)
            answer = _Answer()
            if credit and delivered >= take:
                continue  # the push was cut at its limit: more may be waiting
            # Fewer than asked: everything available was taken. What arrives later moves
            # the mark taken before the acquire, so the wait below returns at once for it.
        if inbound.error is not None:
            raise inbound.error
        if inbound.messages and (inbound.urgent or inbound.ended):
            continue  # the last pass takes what the member sent before it ended
        if inbound.ended:
            return
        due = min(answer.due if answer.answered else float("inf"), inbound.due())
        wait = min(IDLE_CHECK_S, max(due - time.monotonic(), 0.0))
        if not credit:  # only a message from the member can give us work now
            keys = []
            seen = notifier.mark(keys)
        inbound.wake = loop.create_future()
        try:
            await notifier.wait(keys, seen, wait, inbound.wake)
        finally:
            inbound.wake = None
