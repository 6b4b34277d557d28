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
  A stream message is counted from decoding until the next one is read. What gRPC's C
  core receives before a handler runs is bounded by the admission gate instead.
- Stream messages are admitted before they are read (:func:`admitted_messages`): each read
  reserves ``max_message_bytes`` in the broker's :class:`~.request_gate.AdmissionGate`
  (shared with unary Produce and queue Fetch, ``broker/admission.py``), waiting for room
  first, so its client is held back by gRPC flow control instead of being refused; once the
  message is read the reservation shrinks to its size, and it is given back when the
  handler asks for the next one.
- Per client (``logstream.broker.limits``): a call is counted against its address's
  connections and streams and its connection's request bytes before its handler runs;
  a call over a limit is refused there.
- A raised :class:`LogstreamError` leaves as its gRPC status plus the numeric code in
  trailing metadata (``logstream.protocol.status``); anything else is a bug: logged with
  its traceback and answered UNKNOWN_SERVER_ERROR; the broker keeps serving. A cancelled
  call (``asyncio.CancelledError``) leaves quietly.

Answers: a handler returns (or yields) its response message, or that message already
serialised as ``bytes`` (Fetch and Subscribe, ``logstream.broker.fetch_bytes``), which gRPC
sends as they are.

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
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from logstream.broker.limits import ClientLimits, Entry
from logstream.broker.request_gate import AdmissionGate
from logstream.errors import (
    InvalidRequestError,
    LogstreamError,
    ThrottlingQuotaExceededError,
    UnknownServerError,
)
from logstream.protocol.status import abort_with, abort_with_async, client_message

log = logging.getLogger("logstream.broker.rpc")

BAD_INPUT_LOG_EVERY_S = 10.0
FIRST_READ_WAIT_S = 5.0
"""How long a stream's first read (size unknown: it reserves a whole ``max_message_bytes``)
waits for room before it reads without it, so a crowd of new streams that send nothing
cannot hold the queue up for long."""
READ_PARK_S = 1.0
"""A read still without its message after this long parks its reservation
(:meth:`~.request_gate.AdmissionGate.park`): an idle stream keeps room only while nobody
else needs it."""
MIN_READ_RESERVE = 64 * 1024
"""The least a read reserves: what HTTP/2 lets a client send unasked (its initial window)."""


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
    """A byte count of decoded requests: non-blocking ``try_acquire`` (unary requests) and
    ``force_acquire`` (stream messages, admitted before they were read). Thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

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
stream message, admitted by the gate before it was read)."""


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


@dataclass(frozen=True)
class StreamAdmission:
    """Where stream messages reserve room before they are read, and how much (the largest
    message gRPC accepts)."""

    gate: AdmissionGate
    unit: int


async def admitted_messages(
    requests: AsyncIterator[Any], admission: StreamAdmission
) -> AsyncIterator[Any]:
    """A stream's messages, each read only once room is reserved for it in the gate (held at
    the message's size until the next read). Nothing is refused: a stream waits for room, its
    client held back by gRPC flow control meanwhile.

    The first read reserves ``admission.unit`` (the largest message); later reads as much as
    the message before (at least :data:`MIN_READ_RESERVE`): a stream's requests are mostly
    alike, and reserving the largest message for each would let only a few streams read at
    once. A message larger than its reservation is counted in full when it arrives, past the
    limit if need be (later reads wait until the gate is back under it), and the stream's
    next read reserves that much.

    A read without its message after :data:`READ_PARK_S` parks its reservation, so idle
    streams never hold room that others wait for; the first read waits at most
    :data:`FIRST_READ_WAIT_S` for room, then reads without it (its message is counted when
    it arrives). No wait is unbounded by a client: every hold comes back at the end of its
    message's handling or, parked, when someone needs it."""
    gate = admission.gate
    loop = asyncio.get_running_loop()
    reserve = admission.unit
    wait_s: float | None = FIRST_READ_WAIT_S
    while True:
        hold = gate.try_acquire(reserve) or await gate.acquire(reserve, wait_s)
        try:
            parking = None if hold is None else loop.call_later(READ_PARK_S, gate.park, hold)
            try:
                item = await anext(requests)
            except StopAsyncIteration:
                return
            finally:
                if parking is not None:
                    parking.cancel()
                    gate.unpark(hold)  # type: ignore[arg-type]
            if isinstance(item, _Refused):
                raise item.error
            if hold is not None and hold.held:
                hold.resize(item.size)
            else:
                hold = gate.force(item.size)
            reserve, wait_s = max(item.size, MIN_READ_RESERVE), None
            try:
                yield item.message
            finally:
                item.release()
                # gRPC's request iterator keeps the last item until the next read completes
                item.message = None
                del item
        finally:
            if hold is not None:
                hold.release()


def _encoder(cls: Any) -> Callable[[Any], bytes]:
    """The method's response serialiser; an answer given as ``bytes`` is sent unchanged."""
    serialize = cls.SerializeToString

    def encode(response: Any) -> bytes:
        if type(response) is bytes:
            return response
        return serialize(response)  # type: ignore[no-any-return]

    return encode


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
    fn: Callable[..., Any], name: str, admission: StreamAdmission, limits: ClientLimits
) -> Callable[..., Any]:
    async def handler(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            entry = _enter(limits, context, stream=True, nbytes=0)
        except LogstreamError as exc:
            await abort_with_async(context, exc)
        try:
            async for response in fn(admitted_messages(requests, admission), context):
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
    admission: StreamAdmission,
) -> Any:
    fn = getattr(servicer, method.name)
    name = f"{method.containing_service.name}.{method.name}"
    in_cls = message_factory.GetMessageClass(method.input_type)
    encode = _encoder(message_factory.GetMessageClass(method.output_type))
    if method.client_streaming and method.server_streaming:
        if not inspect.isasyncgenfunction(fn):
            raise TypeError(f"{name} must be an async generator")
        return grpc.stream_stream_rpc_method_handler(
            observe(name, "bidi", _wrap_stream_stream(fn, name, admission, limits)),
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
    admission: StreamAdmission | None = None,
) -> grpc.GenericRpcHandler:
    """Every method of ``service``, served by the same-named method of ``servicer``;
    ``admission`` (default: a gate of the budget's size) paces stream messages."""
    per_client = limits if limits is not None else ClientLimits()
    streams = admission or StreamAdmission(AdmissionGate(budget.limit), budget.limit)
    return grpc.method_handlers_generic_handler(
        service.full_name,
        {
            m.name: _method_handler(servicer, m, budget, observe, per_client, streams)
            for m in service.methods
        },
    )
