"""Admission of unary requests that may be large, before gRPC reads their bytes.

A unary request reaches the broker's code only once gRPC's C core has received all of it,
so the request-byte cap (``rpc.ByteBudget``) cannot hold back the bytes of many large
unary Produce calls arriving at once: 16 concurrent 60 MiB calls took the broker's
anonymous memory to 1.6-2.4 GB. This interceptor runs before gRPC starts receiving the
call's message (gRPC awaits it): a gated call reserves ``max_message_bytes`` in the
broker's :class:`~.request_gate.AdmissionGate` (its size is not known yet), waiting for
room behind earlier requests; once its handler runs, the request is decoded and the hold
shrinks to the request's size, held until the handler returns (so a long-poll keeps only
its own bytes). A waiting call's bytes stay with its client (``broker/network.py`` keeps
gRPC's receive windows small). The messages of a ProduceStream pass the same gate, one read
at a time (``rpc.admitted_messages``).

Gated: the unary methods whose requests carry record batches: ``Log/Produce`` (what
``grpcurl`` and other languages' clients use) and ``Queue/Fetch`` (a responder's replies
ride it, decision 0035). The others carry names, offsets and settings: a client that sends
megabytes there is refused by the request-byte cap once decoded (``rpc.ByteBudget``). A
call that never sends its message holds its room until it ends (its deadline, a cancel or
a dead connection found by keepalive); the room is also given back when gRPC drops a call
before its handler ran (the hold's ``__del__``).

Concurrency: ``intercept_service`` runs on the server's event loop; a hold may be released
from a pool thread (a synchronous handler), which wakes the loop's waiters thread-safely.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from logstream.broker.request_gate import AdmissionGate, Hold

GATED_METHODS = frozenset({"/logstream.v1.Log/Produce", "/logstream.v1.Queue/Fetch"})


class UnaryAdmission(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Gated unary calls reserve ``unit`` bytes of ``gate`` before gRPC reads them; see the
    module docstring."""

    def __init__(self, gate: AdmissionGate, unit: int) -> None:
        self.gate = gate
        self.unit = unit

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
        hold = await self.gate.acquire(self.unit)
        assert hold is not None  # no timeout
        return handler._replace(unary_unary=_holding(hold, handler.unary_unary))


def _holding(hold: Hold, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """``behaviour`` (a unary handler, sync or async) holding the decoded request's size
    (``rpc._Decoded.size``; an undecodable one holds nothing) and releasing it on return."""
    if inspect.iscoroutinefunction(behaviour):

        async def run_async(request: Any, context: Any) -> Any:
            hold.resize(getattr(request, "size", 0))
            try:
                return await behaviour(request, context)
            finally:
                hold.release()

        return run_async

    def run(request: Any, context: Any) -> Any:
        hold.resize(getattr(request, "size", 0))
        try:
            return behaviour(request, context)
        finally:
            hold.release()

    return run
