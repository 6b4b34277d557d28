"""Method handlers for every servicer: safe decoding, the request-byte cap, error translation.

Servicers stay plain objects whose methods take a decoded request and return (or yield)
a response; :func:`generic_handler` wraps each method of a service descriptor:

- Decoding never raises. gRPC hands the raw request bytes to :func:`_decoder`, which parses
  them itself; a payload that is not the method's message (garbage, a truncated field,
  invalid UTF-8 in a string field) answers INVALID_ARGUMENT with ``INVALID_REQUEST`` in the
  trailing metadata, and the broker logs at most one line per ``BAD_INPUT_LOG_EVERY_S``
  (with the count it suppressed), so a hostile client cannot flood the log.
- Request bytes the broker holds decoded are capped (``max_request_bytes_in_flight``, a
  :class:`ByteBudget`). A unary request holds its size from decoding to the end of its
  handler (a produce with acks=flushed: through the group commit) and is refused at once
  with RESOURCE_EXHAUSTED / ``THROTTLING_QUOTA_EXCEEDED`` (retriable) when it does not fit.
  A stream reads its next message only while the budget has room (waiting at most
  ``BUDGET_WAIT_S``, its client held back by gRPC flow control meanwhile), and the message
  holds its size until the next one is read. Not covered: the bytes gRPC's C core has
  received before any handler runs (measured in docs/decisions/0019-server-model.md).
- Per client (``logstream.broker.limits``): a call is counted against its address's
  connections and streams and its connection's request bytes before its handler runs;
  a call over a limit is refused there.
- A raised :class:`LogstreamError` leaves as its gRPC status plus the numeric code in
  trailing metadata (``logstream.protocol.status``); anything else is a bug: logged with
  its traceback and answered UNKNOWN_SERVER_ERROR; the broker keeps serving. A cancelled
  call (``asyncio.CancelledError``) leaves quietly.

Which thread runs what: ``async def`` methods run on the server's event loop; plain methods
run in the server's thread pool (``grpc.aio``'s migration pool). See
docs/decisions/0019-server-model.md.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from logstream.broker.limits import ClientLimits, Entry
from logstream.errors import (
    InvalidRequestError,
    LogstreamError,
    ThrottlingQuotaExceededError,
    UnknownServerError,
)
from logstream.protocol.status import abort_with, abort_with_async, client_message

log = logging.getLogger("logstream.broker.rpc")

BAD_INPUT_LOG_EVERY_S = 10.0
BUDGET_WAIT_S = 5.0
"""How long a request waits for room under the byte cap before THROTTLING_QUOTA_EXCEEDED."""


class RateLimitedLog:
    """At most one warning per ``every_s``; the next one says how many were suppressed."""

    def __init__(self, logger: logging.Logger, every_s: float) -> None:
        self._log = logger
        self._every_s = every_s
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next_at:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next_at = now + self._every_s
        if suppressed:
            message += " (%d similar lines suppressed)"
            args = (*args, suppressed)
        self._log.warning(message, *args)


class ByteBudget:
    """A byte semaphore: non-blocking ``try_acquire`` from any thread, and a wait for room
    for coroutines (:meth:`wait_for_room`). Thread-safe:
    ``release`` may run in a pool thread; it wakes the loop's waiters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def used(self) -> int:
        return self._used

    def try_acquire(self, nbytes: int) -> bool:
        with self._lock:
            if self._used + nbytes > self.limit:
                return False
            self._used += nbytes
            return True

    def force_acquire(self, nbytes: int) -> None:
        with self._lock:
            self._used += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self._used -= nbytes
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_wake, future)

    async def _wait_until(self, fits: Callable[[], bool], timeout_s: float) -> bool:
        with self._lock:  # the common case: no timer, no future
            if fits():
                return True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    with self._lock:
                        if fits():
                            return True
                        future: asyncio.Future[None] = loop.create_future()
                        self._waiters.append((loop, future))
                    await future
        except TimeoutError:
            return False

    async def wait_for_room(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until anything is left (acquires nothing)."""
        return await self._wait_until(lambda: self._used < self.limit, timeout_s)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Decoded:
    """A parsed request and the budget bytes it holds until :meth:`release` (idempotent;
    also run when the object dies, so a call cancelled before its handler ran leaks none)."""

    __slots__ = ("_budget", "_nbytes", "message", "size")

    def __init__(self, message: Any, size: int, budget: ByteBudget, held: int) -> None:
        self.message = message
        self.size = size
        self._budget = budget
        self._nbytes = held

    def release(self) -> None:
        nbytes, self._nbytes = self._nbytes, 0
        if nbytes:
            self._budget.release(nbytes)

    def __del__(self) -> None:
        self.release()


class _Refused:
    """A request answered with ``error`` before its handler saw it."""

    __slots__ = ("error",)

    def __init__(self, error: LogstreamError) -> None:
        self.error = error


_bad_input_log = RateLimitedLog(log, BAD_INPUT_LOG_EVERY_S)

REFUSE, FORCE = "refuse", "force"
"""How a decoder accounts a request's bytes: ``REFUSE`` what does not fit (a unary call:
gRPC has read it already, so waiting would only keep it alive longer), or ``FORCE`` (a
stream message, read only after :meth:`ByteBudget.wait_for_room`)."""


def _over_budget(budget: ByteBudget, nbytes: int) -> ThrottlingQuotaExceededError:
    return ThrottlingQuotaExceededError(
        f"broker holds {budget.used} of its {budget.limit} request bytes; "
        f"a {nbytes}-byte request does not fit, retry later"
    )


def _decoder(cls: Any, budget: ByteBudget, method: str, mode: str) -> Callable[[bytes], Any]:
    type_name = cls.DESCRIPTOR.full_name

    def decode(raw: bytes) -> _Decoded | _Refused:
        nbytes = len(raw)
        if mode == REFUSE:
            if not budget.try_acquire(nbytes):
                return _Refused(_over_budget(budget, nbytes))
        else:
            budget.force_acquire(nbytes)
        try:
            message = cls.FromString(raw)
        except Exception as exc:  # DecodeError, or anything else the parser raises
            budget.release(nbytes)
            _bad_input_log.warning(
                "%s: undecodable %s request (%d bytes): %s", method, type_name, nbytes, exc
            )
            return _Refused(
                InvalidRequestError(f"request is not a valid {type_name} message: {exc}")
            )
        return _Decoded(message, nbytes, budget, nbytes)

    return decode


def error_fields(exc: LogstreamError | None) -> tuple[int, str]:
    """``(error_code, error_message)`` for a per-item failure in a response (0, "" for none)."""
    if exc is None:
        return 0, ""
    return exc.code, client_message(exc)


def translate(exc: BaseException, method: str) -> LogstreamError:
    """A handler's exception as the error to answer with (bugs are logged here, once)."""
    if isinstance(exc, LogstreamError):
        return exc
    log.error("%s failed unexpectedly", method, exc_info=exc)
    return UnknownServerError(f"{type(exc).__name__}: {exc}")


async def _unwrap(requests: AsyncIterator[Any], budget: ByteBudget) -> AsyncIterator[Any]:
    """A stream's messages, each read only while the budget has room (a stream waits
    between messages, so its client is held back by gRPC flow control meanwhile)."""
    while True:
        # the common case (room left) costs an attribute read, not a coroutine and a lock
        if budget.used >= budget.limit and not await budget.wait_for_room(BUDGET_WAIT_S):
            raise _over_budget(budget, 0)
        try:
            item = await anext(requests)
        except StopAsyncIteration:
            return
        if isinstance(item, _Refused):
            raise item.error
        try:
            yield item.message
        finally:
            item.release()


def _enter(limits: ClientLimits, context: Any, *, stream: bool, nbytes: int) -> Entry:
    """The call counted against its client's limits (raises the limit it would break)."""
    return limits.enter(context.peer(), stream=stream, nbytes=nbytes)


def _wrap_sync_unary(fn: Callable[..., Any], name: str, limits: ClientLimits) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Refused):
            abort_with(context, request.error)
        try:
            entry = _enter(limits, context, stream=False, nbytes=request.size)
        except LogstreamError as exc:
            request.release()
            abort_with(context, exc)
        try:
            return fn(request.message, context)
        except Exception as exc:
            err = translate(exc, name)
        finally:
            request.release()
            entry.leave()
        abort_with(context, err)

    return handler


def _wrap_async_unary(
    fn: Callable[..., Any], name: str, limits: ClientLimits
) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, _Refused):
            await abort_with_async(context, request.error)
        try:
            entry = _enter(limits, context, stream=False, nbytes=request.size)
        except LogstreamError as exc:
            request.release()
            await abort_with_async(context, exc)
        try:
            return await fn(request.message, context)
        except Exception as exc:
            err = translate(exc, name)
        finally:
            request.release()
            entry.leave()
        await abort_with_async(context, err)

    return handler


def _wrap_unary_stream(
    fn: Callable[..., Any], name: str, limits: ClientLimits
) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, _Refused):
            await abort_with_async(context, request.error)
        message = request.message
        request.release()  # small, and kept alive by the stream: not worth holding budget
        try:
            entry = _enter(limits, context, stream=True, nbytes=0)
        except LogstreamError as exc:
            await abort_with_async(context, exc)
        try:
            async for response in fn(message, context):
                yield response
            return
        except Exception as exc:
            err = translate(exc, name)
        finally:
            entry.leave()
        await abort_with_async(context, err)

    return handler


def _wrap_stream_stream(
    fn: Callable[..., Any], name: str, budget: ByteBudget, limits: ClientLimits
) -> Callable[..., Any]:
    async def handler(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            entry = _enter(limits, context, stream=True, nbytes=0)
        except LogstreamError as exc:
            await abort_with_async(context, exc)
        try:
            async for response in fn(_unwrap(requests, budget), context):
                yield response
            return
        except Exception as exc:
            err = translate(exc, name)
        finally:
            entry.leave()
        await abort_with_async(context, err)

    return handler


Observe = Callable[[str, str, Callable[..., Any]], Callable[..., Any]]
"""A hook around each built handler: ``(method name, kind, handler) -> handler`` (metrics)."""


def no_observer(name: str, kind: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    return handler


def _method_handler(
    servicer: object,
    method: MethodDescriptor,
    budget: ByteBudget,
    observe: Observe,
    limits: ClientLimits,
) -> Any:
    fn = getattr(servicer, method.name)
    name = f"{method.containing_service.name}.{method.name}"
    in_cls = message_factory.GetMessageClass(method.input_type)
    encode = message_factory.GetMessageClass(method.output_type).SerializeToString
    if method.client_streaming and method.server_streaming:
        if not inspect.isasyncgenfunction(fn):
            raise TypeError(f"{name} must be an async generator")
        return grpc.stream_stream_rpc_method_handler(
            observe(name, "bidi", _wrap_stream_stream(fn, name, budget, limits)),
            request_deserializer=_decoder(in_cls, budget, name, FORCE),
            response_serializer=encode,
        )
    if method.client_streaming:
        raise TypeError(f"{name}: client-streaming methods are not supported")
    if method.server_streaming:
        if not inspect.isasyncgenfunction(fn):
            raise TypeError(f"{name} must be an async generator")
        return grpc.unary_stream_rpc_method_handler(
            observe(name, "unary_stream", _wrap_unary_stream(fn, name, limits)),
            request_deserializer=_decoder(in_cls, budget, name, REFUSE),
            response_serializer=encode,
        )
    is_async = inspect.iscoroutinefunction(fn)
    wrap = _wrap_async_unary if is_async else _wrap_sync_unary
    return grpc.unary_unary_rpc_method_handler(
        observe(name, "async" if is_async else "sync", wrap(fn, name, limits)),
        request_deserializer=_decoder(in_cls, budget, name, REFUSE),
        response_serializer=encode,
    )


def generic_handler(
    service: ServiceDescriptor,
    servicer: object,
    budget: ByteBudget,
    observe: Observe = no_observer,
    limits: ClientLimits | None = None,
) -> grpc.GenericRpcHandler:
    """Every method of ``service``, served by the same-named method of ``servicer``."""
    per_client = limits if limits is not None else ClientLimits()
    return grpc.method_handlers_generic_handler(
        service.full_name,
        {
            m.name: _method_handler(servicer, m, budget, observe, per_client)
            for m in service.methods
        },
    )
