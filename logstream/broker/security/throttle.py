"""Handler wrapping that applies :class:`~logstream.broker.security.quotas.Quotas`.

The throttle works as Kafka's does since KIP-219: an answer over the quota is sent at once
and says how long to wait (``throttle_time_ms`` in Produce, Fetch and queue Fetch answers,
the trailing metadata ``logstream-throttle-ms`` on every unary answer); the broker then
holds back the caller's *next* request until that time has passed. A client that honours
the throttle (the Python Producer, Consumer and QueueConsumer do) sends nothing meanwhile
and is never stalled; one that does not is slowed all the same, its next request waiting
on the broker. A queue Fetch counts its answer's bytes against ``fetch_bytes_per_s``.

- The hold is per principal, whatever the call or connection (a new stream or channel does
  not escape it). A plain method waits in its pool thread, a coroutine on the loop; a
  ProduceStream reads its next message only after the hold, so gRPC flow control holds the
  client back. Stream answers are matched to their requests by ``correlation_id``; a
  request marked ``errors_only`` (a Requester's) is not answered when it succeeds, so its
  throttle is not reported, only applied (the stream's next message waits).
- A request is never split or refused for its size: the one that goes over the quota is
  served, and the ones after it wait. The quota therefore holds over time, to within one
  request (a producer that sends all it has in one 2 MiB request gets it stored at once,
  and waits afterwards).
- Subscribe and a queue push session (``Queue/Session``): the broker pushes, so nothing
  can wait on the client's side: the broker holds each answer back by its delay (as
  before) and reports that delay in it. The session's own messages are paced like a
  ProduceStream's (one request each against the request rate).

``Quotas.throttled_s`` sums the delays reported; ``Throttle.stalled_s`` the time requests
were held back by the broker (near zero when clients honour the throttle).

A :class:`~logstream.broker.security.wrapping.HandlerWrapper`, like the authorizer.
Concurrency: holds and ``stalled_s`` are updated under one lock (pool threads and loop).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from logstream.broker.fetch_bytes import MAX_THROTTLE_MS, with_throttle_ms
from logstream.broker.security.quotas import THROTTLE_KEY, Quotas
from logstream.broker.security.wrapping import HandlerWrapper, PrincipalOf

PRODUCE = frozenset({"/logstream.v1.Log/Produce", "/logstream.v1.Log/ProduceStream"})
FETCH = frozenset(
    {"/logstream.v1.Log/Fetch", "/logstream.v1.Log/Subscribe", "/logstream.v1.Queue/Fetch"}
)
PUSH = frozenset({"/logstream.v1.Queue/Session"})
MAX_HOLDS = 100_000
"""Principals whose hold is remembered; past it, expired holds are dropped."""


def _size(message: Any) -> int:
    if type(message) is bytes:  # an answer already serialised (fetch_bytes)
        return len(message)
    try:
        return int(message.ByteSize())
    except Exception:
        return 0


def _ms(seconds: float) -> int:
    """Rounded up: a client that waits the reported time is past the broker's hold."""
    return math.ceil(seconds * 1000)


def _report(response: Any, wait_s: float) -> Any:
    """``response`` with the throttle written into it when it has the field (Produce, Fetch,
    queue Fetch); a Fetch or Subscribe answer given as bytes gets the field appended."""
    if not wait_s or response is None:
        return response
    if type(response) is bytes:
        return with_throttle_ms(response, _ms(wait_s))
    if hasattr(response, "throttle_time_ms"):
        response.throttle_time_ms = min(_ms(wait_s), MAX_THROTTLE_MS)
    return response


class Throttle(HandlerWrapper):
    def __init__(self, quotas: Quotas) -> None:
        self.quotas = quotas
        self.stalled_s = 0.0
        self._lock = threading.Lock()
        self._hold_until: dict[str, float] = {}

    def _delay(self, principal: str, method: str, request_size: int, response: Any) -> float:
        produced = request_size if method in PRODUCE else 0
        fetched = _size(response) if method in FETCH and response is not None else 0
        return self._wait(principal, produced, fetched)

    def _wait(self, principal: str, produce_bytes: int, fetch_bytes: int) -> float:
        """One request's throttle: the longest of its request-rate and byte-rate delays."""
        q = self.quotas
        wait = q.delay(principal, "requests_per_s", 1)
        if produce_bytes:
            wait = max(wait, q.delay(principal, "produce_bytes_per_s", produce_bytes))
        if fetch_bytes:
            wait = max(wait, q.delay(principal, "fetch_bytes_per_s", fetch_bytes))
        return wait

    # -- per-principal holds (unary calls) -----------------------------------------------------

    def _stall_for(self, principal: str) -> float:
        """How long this request must wait for the principal's previous throttle."""
        with self._lock:
            left = self._hold_until.get(principal, 0.0) - time.monotonic()
            if left <= 0:
                return 0.0
            self.stalled_s += left
            return left

    def _hold(self, principal: str, wait_s: float) -> None:
        with self._lock:
            now = time.monotonic()
            if len(self._hold_until) >= MAX_HOLDS:
                self._hold_until = {p: t for p, t in self._hold_until.items() if t > now}
            self._hold_until[principal] = max(self._hold_until.get(principal, 0.0), now + wait_s)

    # -- another protocol's requests (the Kafka listener) ---------------------------------------

    def held_for(self, principal: str) -> float:
        """Seconds the principal's next request must still wait before it is served (what a
        client that ignored its last throttle gets held back; counted in ``stalled_s``)."""
        return self._stall_for(principal)

    def charge(self, principal: str, *, produce_bytes: int = 0, fetch_bytes: int = 0) -> float:
        """Count one answered request of ``principal`` against its quotas (request rate, and
        the produced or fetched bytes); returns the throttle in seconds to report in the
        answer, and holds the principal's next request that long."""
        wait = self._wait(principal, produce_bytes, fetch_bytes)
        if wait:
            self._hold(principal, wait)
        return wait

    def _answered(self, principal: str, method: str, size: int, response: Any, context: Any) -> Any:
        """``response``, carrying its throttle when it has one."""
        wait = self._delay(principal, method, size, response)
        if not wait:
            return response
        self._hold(principal, wait)
        context.set_trailing_metadata(((THROTTLE_KEY, str(_ms(wait))),))
        return _report(response, wait)

    def _sync_unary(self, inner: Any, method: str, principal_of: PrincipalOf) -> Any:
        def handler(request: Any, context: Any) -> Any:
            principal = principal_of(context)
            size = getattr(request, "size", 0)
            stall = self._stall_for(principal)
            if stall:
                time.sleep(stall)
            response = inner(request, context)
            return self._answered(principal, method, size, response, context)

        return handler

    def _async_unary(self, inner: Any, method: str, principal_of: PrincipalOf) -> Any:
        async def handler(request: Any, context: Any) -> Any:
            principal = principal_of(context)
            size = getattr(request, "size", 0)
            stall = self._stall_for(principal)
            if stall:
                await asyncio.sleep(stall)
            response = await inner(request, context)
            return self._answered(principal, method, size, response, context)

        return handler

    # -- streams ---------------------------------------------------------------------------------

    def _stream_stream(self, inner: Any, method: str, principal_of: PrincipalOf) -> Any:
        async def handler(requests: Any, context: Any) -> AsyncIterator[Any]:
            principal = principal_of(context)
            waits: dict[int, float] = {}  # correlation id -> throttle of its answer

            async def paced(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
                async for item in items:
                    stall = self._stall_for(principal)
                    if stall:
                        await asyncio.sleep(stall)
                    wait = self._delay(principal, method, getattr(item, "size", 0), None)
                    if wait:
                        self._hold(principal, wait)
                        message = getattr(item, "message", None)
                        if not getattr(message, "errors_only", False):  # may get no answer
                            waits[getattr(message, "correlation_id", 0)] = wait
                    yield item

            async for response in inner(paced(requests), context):
                if waits:
                    wait = waits.pop(getattr(response, "correlation_id", 0), 0.0)
                    response = _report(response, wait)
                if method in PUSH:  # pushed records count as fetched: held back, as Subscribe's
                    wait = self.quotas.delay(principal, "fetch_bytes_per_s", _size(response))
                    if wait:
                        await asyncio.sleep(wait)
                        response = _report(response, wait)
                yield response

        return handler

    def _unary_stream(self, inner: Any, method: str, principal_of: PrincipalOf) -> Any:
        async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
            principal = principal_of(context)
            wait = self.quotas.delay(principal, "requests_per_s", 1)
            if wait:
                await asyncio.sleep(wait)
            async for response in inner(request, context):
                wait = self.quotas.delay(principal, "fetch_bytes_per_s", _size(response))
                if wait:
                    await asyncio.sleep(wait)
                    response = _report(response, wait)
                yield response

        return handler
