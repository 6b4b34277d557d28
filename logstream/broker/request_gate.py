"""The request-byte gate: room for request bytes the broker has asked a transport to receive.

gRPC's C core receives a message only when the broker asks for the next one (a unary call:
just before its handler runs; a stream: when its handler reads), and then the whole message,
up to ``max_message_bytes``; until then the bytes stay at the client, held back by HTTP/2
flow control (``broker/network.py`` keeps each call's window small). So the broker can bound
what it receives by asking only while it has room: a request reserves ``max_message_bytes``
(its size is not known before it is read) and waits for room first; a stream message gives
back what it did not use as soon as it is read. The Kafka listener knows a frame's size
from its prefix and reserves exactly that.

:class:`AdmissionGate` counts reserved bytes against ``limit`` (``max_request_bytes_in_flight``).
Waiters are served first come, first served, and a request never passes an earlier waiter,
so a large one is not starved by a stream of small ones. A request larger than the limit is
admitted alone (it waits until nothing else is held).

A reservation for a stream read that waits long for its message (an idle stream) is
*parked* (:meth:`AdmissionGate.park`): kept while nobody needs the room, given back as soon
as a waiter does, so idle streams never hold up busy ones. gRPC cannot take a read back, so
the message such a read receives later arrives without room;
:meth:`AdmissionGate.force` counts it anyway: the count may then exceed the limit, and later
requests wait until it is back under it. The same holds for a message larger than its
reservation (a stream reserves what its previous message took): the excess is counted when
the message arrives. Both are summed in ``unreserved_bytes``, so a scrape shows how much
arrived past the gate.

Counts for metrics: ``in_use`` (bytes reserved or held), ``waiting`` (requests queued now),
``parked`` (idle reads' revocable reservations), ``waits`` (requests that had to queue, since
the start) and ``unreserved_bytes``.

Concurrency: the gate is used from event loops (the gRPC server's, the Kafka listener's)
and pool threads; one lock guards the count and the queue, and a waiter is woken on its
own loop (``call_soon_threadsafe``). A :class:`Hold` is given back once, by
:meth:`Hold.release` or when it is dropped.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque


class Hold:
    """Bytes held in an :class:`AdmissionGate`; :meth:`release` gives them back (once)."""

    __slots__ = ("_gate", "nbytes")

    def __init__(self, gate: AdmissionGate, nbytes: int) -> None:
        self._gate: AdmissionGate | None = gate
        self.nbytes = nbytes

    @property
    def held(self) -> bool:
        return self._gate is not None

    def resize(self, nbytes: int) -> None:
        """Hold ``nbytes`` instead (a reservation trued up to the size that arrived); past
        the limit only if it grows."""
        gate = self._gate
        if gate is not None and nbytes != self.nbytes:
            delta, self.nbytes = nbytes - self.nbytes, nbytes
            gate._adjust(delta, unreserved=delta > 0)

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._adjust(-self.nbytes, self)

    def __del__(self) -> None:
        self.release()


class _Waiter:
    __slots__ = ("future", "loop", "nbytes")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Hold], nbytes: int
    ) -> None:
        self.loop = loop
        self.future = future
        self.nbytes = nbytes


class AdmissionGate:
    """Room for at most ``limit`` request bytes; see the module docstring.
    ``in_use``, ``waiting``, ``parked``, ``waits`` and ``unreserved_bytes`` are for tests and
    metrics."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1: {limit}")
        self.limit = limit
        self.in_use = 0
        self.waits = 0
        self.unreserved_bytes = 0
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()
        self._parked: dict[Hold, None] = {}  # oldest first

    @property
    def parked(self) -> int:
        return len(self._parked)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _fits(self, nbytes: int) -> bool:
        return self.in_use + nbytes <= self.limit or self.in_use == 0

    def try_acquire(self, nbytes: int) -> Hold | None:
        """A hold of ``nbytes`` if it fits now and nobody waits, else None (never waits)."""
        with self._lock:
            if self._waiters or not self._fits(nbytes):
                return None
            self.in_use += nbytes
        return Hold(self, nbytes)

    def force(self, nbytes: int) -> Hold:
        """Count ``nbytes`` that are here already, room or not (arrived unreserved)."""
        with self._lock:
            self.in_use += nbytes
            self.unreserved_bytes += nbytes
        return Hold(self, nbytes)

    async def acquire(self, nbytes: int, timeout_s: float | None = None) -> Hold | None:
        """A hold of ``nbytes`` once it fits and every earlier waiter was served; None if
        ``timeout_s`` passed first."""
        hold = self.try_acquire(nbytes)
        if hold is not None:
            return hold
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future(), nbytes)
        with self._lock:
            self._waiters.append(waiter)
            self.waits += 1
        self._revoke_parked()
        try:
            if timeout_s is None:
                return await waiter.future
            async with asyncio.timeout(timeout_s):
                return await waiter.future
        except TimeoutError:
            self._leave(waiter)
            return None
        except BaseException:
            self._leave(waiter)
            raise

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter gives up: out of the queue, or its hold (granted meanwhile) given back."""
        with self._lock:
            try:
                self._waiters.remove(waiter)
                queued = True
            except ValueError:
                queued = False
        if queued:
            self._grant()  # the waiters behind it may fit now
        elif waiter.future.done() and not waiter.future.cancelled():
            waiter.future.result().release()

    def park(self, hold: Hold) -> None:
        """Make ``hold`` revocable: it is given back as soon as a waiter needs its room (at
        once if one waits now). For a read that has waited long for its message."""
        with self._lock:
            if not hold.held:
                return
            if not self._waiters:
                self._parked[hold] = None
                return
        hold.release()

    def unpark(self, hold: Hold) -> bool:
        """``hold`` no longer revocable; whether it is still held."""
        with self._lock:
            self._parked.pop(hold, None)
        return hold.held

    def _revoke_parked(self) -> None:
        """Give back parked holds, oldest first, while the first waiter does not fit."""
        while True:
            with self._lock:
                if not self._waiters or not self._parked or self._fits(self._waiters[0].nbytes):
                    break
                hold = next(iter(self._parked))
                del self._parked[hold]
            hold.release()
        self._grant()

    def _adjust(
        self, delta: int, released: Hold | None = None, *, unreserved: bool = False
    ) -> None:
        with self._lock:
            self.in_use += delta
            if unreserved:
                self.unreserved_bytes += delta
            if released is not None:
                self._parked.pop(released, None)
        if delta < 0:
            self._grant()

    def _grant(self) -> None:
        granted: list[tuple[_Waiter, Hold]] = []
        with self._lock:
            while self._waiters and self._fits(self._waiters[0].nbytes):
                waiter = self._waiters.popleft()
                self.in_use += waiter.nbytes
                granted.append((waiter, Hold(self, waiter.nbytes)))
        for waiter, hold in granted:
            waiter.loop.call_soon_threadsafe(_hand_over, waiter.future, hold)


def _hand_over(future: asyncio.Future[Hold], hold: Hold) -> None:
    if future.done():  # the waiter gave up (cancelled, timed out) after it was granted
        hold.release()
    else:
        future.set_result(hold)
