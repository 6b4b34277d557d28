"""Error translation at the gRPC boundary, in one place for broker and client.

Per-item failures travel as ``error_code`` / ``error_message`` fields in responses.
Request-level failures travel as a gRPC status whose code is chosen by :func:`grpc_code_for`
and whose trailing metadata carries ``logstream-error-code`` (the numeric code from
``logstream.errors``), so the client can raise the exact exception class again.

Every message the broker sends goes through :func:`client_message`, which replaces absolute
file-system paths (a storage error names the file that failed) with ``<path>``: a client
learns what failed, not where the broker keeps its data. The broker logs the full message.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import grpc

from logstream import errors
from logstream.errors import LogstreamError

ERROR_CODE_KEY = "logstream-error-code"

log = logging.getLogger("logstream.broker.errors")

_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/[^\s'\"()\[\]<>]*?(?=[:,;.]*(?:[\s'\"()\[\]<>]|$))")
"""A ``/`` that starts a token (not ``a/b`` or ``../x``) up to white space, a quote or a
bracket; trailing ``:,;.`` stay outside."""
_LOG_EVERY_S = 60.0
MAX_MESSAGE_CHARS = 1_000
"""Longest error message sent to a client (gRPC's default metadata limit is 8 KiB)."""
_logged: dict[str, float] = {}
_logged_lock = threading.Lock()


def client_message(exc: LogstreamError) -> str:
    """``NAME: message`` as sent to a client, server paths replaced by ``<path>``, cut to
    ``MAX_MESSAGE_CHARS`` (a message may quote the request: a 100 kB name echoed into the
    status would exceed the client's metadata limit and arrive without its error code).
    The first time a message is hidden (then at most once a minute) the broker logs it
    whole."""
    text = f"{exc.name}: {exc.message}"
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    hidden = _ABSOLUTE_PATH.sub("<path>", text)
    if hidden != text:
        now = time.monotonic()
        with _logged_lock:
            due = now - _logged.get(text, -_LOG_EVERY_S) >= _LOG_EVERY_S
            if due:
                if len(_logged) >= 1024:
                    _logged.clear()
                _logged[text] = now
        if due:
            log.warning("answered a client with paths hidden: %s", text)
    return hidden


_STATUS_BY_CLASS: list[tuple[type[LogstreamError], grpc.StatusCode]] = [
    (errors.UnknownTopicOrPartitionError, grpc.StatusCode.NOT_FOUND),
    (errors.GroupIdNotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.UnknownMemberIdError, grpc.StatusCode.NOT_FOUND),
    (errors.TopicAlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.OffsetOutOfRangeError, grpc.StatusCode.OUT_OF_RANGE),
    (errors.MessageTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.RecordListTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ThrottlingQuotaExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ConnectionLimitExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.CorruptRecordError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidTopicError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidRequiredAcksError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidPartitionsError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidTimestampError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidSessionTimeoutError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidCommitOffsetSizeError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.OutOfOrderSequenceError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.InvalidProducerEpochError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.IllegalGenerationError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.NonEmptyGroupError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.GroupKindMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.QueueRecordNotHeldError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.QueueRecordFinishedError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.QueueOffsetNotInWindowError, grpc.StatusCode.OUT_OF_RANGE),
    (errors.InternalTopicReadOnlyError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.RebalanceInProgressError, grpc.StatusCode.ABORTED),
    (errors.AuthenticationFailedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.TopicAuthorizationFailedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.GroupAuthorizationFailedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ClusterAuthorizationFailedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.KafkaStorageError, grpc.StatusCode.UNAVAILABLE),
    (errors.RequestTimedOutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.BrokerNotAvailableError, grpc.StatusCode.UNAVAILABLE),
]


def grpc_code_for(exc: LogstreamError) -> grpc.StatusCode:
    """The gRPC status code that best describes ``exc`` (INTERNAL only for unknown errors)."""
    for cls, code in _STATUS_BY_CLASS:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def abort_with(context: grpc.ServicerContext, exc: LogstreamError) -> None:
    """Abort the current RPC with ``exc`` as status + machine-readable trailing code."""
    context.set_trailing_metadata(((ERROR_CODE_KEY, str(exc.code)),))
    context.abort(grpc_code_for(exc), client_message(exc))


async def abort_with_async(
    context: grpc.aio.ServicerContext[Any, Any], exc: LogstreamError
) -> None:
    """:func:`abort_with` for a ``grpc.aio`` handler (its ``abort`` is a coroutine)."""
    context.set_trailing_metadata(((ERROR_CODE_KEY, str(exc.code)),))
    await context.abort(grpc_code_for(exc), client_message(exc))


_TRANSPORT_UNAVAILABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}


def error_from_rpc(err: grpc.RpcError) -> LogstreamError:
    """Turn a failed call back into the most specific logstream exception."""
    code: int | None = None
    try:
        for key, value in err.trailing_metadata() or ():
            if key == ERROR_CODE_KEY:
                code = int(value)
    except Exception:
        code = None
    details = ""
    try:
        details = err.details() or ""
    except Exception:
        details = str(err)
    if code is not None:
        cls = errors.for_code(code)
        prefix = f"{cls.name}: "
        return cls(details[len(prefix) :] if details.startswith(prefix) else details)
    status = err.code() if hasattr(err, "code") else None
    if status == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.RequestTimedOutError(details or "request timed out")
    if status in _TRANSPORT_UNAVAILABLE:
        return errors.BrokerNotAvailableError(details or "broker not available")
    return errors.UnknownServerError(f"{status}: {details}")


def raise_for_code(code: int, message: str) -> None:
    """Raise the exception for a non-zero per-item ``error_code``."""
    if code:
        raise errors.for_code(code)(message)


def error_for_code(code: int, message: str) -> LogstreamError:
    return errors.for_code(code)(message)
