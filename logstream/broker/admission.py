"""Admission of unary requests that may be large, before gRPC reads their bytes.

A unary request reaches the broker's code only once gRPC's C core has received all of it,
so the request-byte cap (``rpc.ByteBudget``) cannot hold back the bytes of many large
unary Produce calls arriving at once: 16 concurrent 60 MiB calls took the broker's
anonymous memory to 1.6-2.4 GB. This gate runs as a server interceptor, which gRPC awaits
*before* it starts receiving the call's message: a gated call waits there for one of
``slots`` (``max_request_bytes_in_flight // max_message_bytes``, at least 1) and holds it
until its handler returns. A waiting call's bytes stay with its client: the broker turns
off gRPC's bandwidth-delay probing (``broker/network.py``), so a connection's receive
window stays at HTTP/2's initial size instead of growing to take whole messages unasked.

Gated: unary ``Log/Produce`` (what ``grpcurl`` and other languages' clients use; logstream's
own Producer sends on ``ProduceStream``, whose messages the byte cap already paces). A
call that never sends its message holds its slot until it ends (its deadline, a cancel or
a dead connection found by keepalive); a slot is also given back when gRPC drops a call
before its handler ran (the slot's ``__del__``).

Concurrency: ``intercept_service`` runs on the server's event loop; a slot may be released
from a pool thread (a synchronous handler), which wakes the loop's waiters thread-safely.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

GATED_METHODS = frozenset({"/logstream.v1.Log/Produce"})


class _Slot:
    """One admitted call's place; given back once, by :meth:`release` or when dropped."""

    __slots__ = ("_gate",)

    def __init__(self, gate: UnaryAdmission) -> None:
        self._gate: UnaryAdmission | None = gate

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._give_back()

    def __del__(self) -> None:
        self.release()


class UnaryAdmission(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """At most ``slots`` gated unary calls are received or handled at once; see the module
    docstring. ``waiting`` and ``in_use`` are for tests and metrics."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1: {slots}")
        self.slots = slots
        self.in_use = 0
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if (
            handler is None
            or details.method not in GATED_METHODS
            or handler.unary_unary is None
            or handler.request_streaming
        ):
            return handler
        slot = await self._acquire()
        return handler._replace(unary_unary=_holding(slot, handler.unary_unary))

    async def _acquire(self) -> _Slot:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self.in_use < self.slots:
                    self.in_use += 1
                    return _Slot(self)
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, future))
            try:
                await future
            except BaseException:  # cancelled: leave the queue, or pass on a wake-up
                with self._lock:
                    if (loop, future) in self._waiters:
                        self._waiters.remove((loop, future))
                        future = None  # type: ignore[assignment]
                if future is not None:
                    self._wake_next()
                raise

    def _give_back(self) -> None:
        with self._lock:
            self.in_use -= 1
        self._wake_next()

    def _wake_next(self) -> None:
        with self._lock:
            woken = self._waiters.popleft() if self._waiters else None
        if woken is not None:
            loop, future = woken
            loop.call_soon_threadsafe(_wake, future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _holding(slot: _Slot, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """``behaviour`` (a unary handler, sync or async) releasing ``slot`` when it returns."""
    if inspect.iscoroutinefunction(behaviour):

        async def run_async(request: Any, context: Any) -> Any:
            try:
                return await behaviour(request, context)
            finally:
                slot.release()

        return run_async

    def run(request: Any, context: Any) -> Any:
        try:
            return behaviour(request, context)
        finally:
            slot.release()

    return run
