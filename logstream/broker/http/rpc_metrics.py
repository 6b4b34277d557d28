"""Per-RPC counters, latency and slow-request events around the broker's method handlers.

:func:`observe_handler` wraps one handler built by ``logstream.broker.rpc`` (the outermost
layer, so decoding refusals and aborts are seen too). Per call it costs one counter
increment and, for unary calls, one histogram observation on children bound here once.
An error's label is the logstream error name from the trailing metadata the handler set
(``logstream-error-code``), else the gRPC status name.

Streams (Subscribe, ProduceStream) are counted when opened and tracked in the open-streams
gauge; their duration is how long a client keeps them, not a latency, so it is not timed.
Fetch is timed but never reported as slow: a long-poll waits by design.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from logstream import errors
from logstream.broker.http.metrics import BrokerMetrics
from logstream.protocol.status import ERROR_CODE_KEY

log = logging.getLogger("logstream.broker.rpc")

NEVER_SLOW = frozenset({"Log.Fetch"})
QUIET_ENDINGS = (asyncio.CancelledError, GeneratorExit)
"""A client that cancels or closes its call: a normal ending, not an error."""

SYNC_UNARY, ASYNC_UNARY, UNARY_STREAM, STREAM_STREAM = "sync", "async", "unary_stream", "bidi"


def _error_name(context: Any) -> str:
    try:
        for key, value in context.trailing_metadata() or ():
            if key == ERROR_CODE_KEY:
                return errors.for_code(int(value)).name
        code = context.code()
    except Exception:  # a context that cannot say: count the error all the same
        return "UNKNOWN"
    return getattr(code, "name", "UNKNOWN") if code is not None else "CANCELLED"


class _Call:
    """The bound instruments of one method."""

    def __init__(self, metrics: BrokerMetrics, name: str, streaming: bool) -> None:
        self.name = name
        self.metrics = metrics
        self.requests = metrics.requests.labels(name)
        if streaming:
            self.streams = metrics.open_streams.labels(name)
        else:
            self.latency = metrics.latency.labels(name)
        self.slow_s = 0.0 if name in NEVER_SLOW else metrics.slow_request_s

    def failed(self, context: Any) -> None:
        self.metrics.errors.labels(self.name, _error_name(context)).inc()

    def finished(self, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.latency.observe(elapsed)
        if self.slow_s and elapsed >= self.slow_s:
            log.warning(
                "slow request: %s took %.0f ms",
                self.name,
                elapsed * 1000,
                extra={
                    "event": "slow_request",
                    "fields": {"method": self.name, "duration_ms": round(elapsed * 1000, 1)},
                },
            )


def observe_handler(
    metrics: BrokerMetrics, name: str, kind: str, handler: Callable[..., Any]
) -> Callable[..., Any]:
    """``handler`` counted and timed under the method label ``name`` ("Log.Produce")."""
    call = _Call(metrics, name, streaming=kind not in (SYNC_UNARY, ASYNC_UNARY))
    if kind == SYNC_UNARY:

        def sync_unary(request: Any, context: Any) -> Any:
            call.requests.inc()
            started = time.perf_counter()
            try:
                return handler(request, context)
            except QUIET_ENDINGS:
                raise
            except BaseException:
                call.failed(context)
                raise
            finally:
                call.finished(started)

        return sync_unary

    if kind == ASYNC_UNARY:

        async def async_unary(request: Any, context: Any) -> Any:
            call.requests.inc()
            started = time.perf_counter()
            try:
                return await handler(request, context)
            except QUIET_ENDINGS:
                raise
            except BaseException:
                call.failed(context)
                raise
            finally:
                call.finished(started)

        return async_unary

    async def streaming(request: Any, context: Any) -> Any:
        call.requests.inc()
        call.streams.inc()
        try:
            async for response in handler(request, context):
                yield response
        except QUIET_ENDINGS:
            raise
        except BaseException:
            call.failed(context)
            raise
        finally:
            call.streams.dec()

    return streaming
