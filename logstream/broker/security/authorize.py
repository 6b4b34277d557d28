"""Authorisation of one call: the principal, the ACL checks of its request, the filtering
of its answer, and the revocation of open streams when rules change.

:class:`Authorizer` wraps a method handler (built by ``logstream.broker.rpc``) in one of
the same kind (:class:`~logstream.broker.security.wrapping.HandlerWrapper`). The
request it sees is the broker's decoded-request holder (``.message``); a request that could
not be decoded passes through untouched and is refused by the inner handler.

- Unary calls: every check of the request must pass before the handler runs; list and
  describe answers are filtered afterwards.
- ProduceStream: each message is checked as it is read (a cached lookup per topic).
- Subscribe: checked when opened, again before each answer once the rules changed, and
  when a rule is removed while it waits, its task is cancelled and answers the refusal.

Concurrency: :meth:`Authorizer.rules_changed` may run on any thread; the open-stream
registry is touched on the loop only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from logstream.broker.security.acls import AclStore
from logstream.broker.security.rules import CHECKS, FILTERS, refusal
from logstream.broker.security.wrapping import HandlerWrapper
from logstream.errors import ClusterAuthorizationFailedError, LogstreamError
from logstream.protocol.status import abort_with, abort_with_async

audit_log = logging.getLogger("logstream.audit")

AUDITED = frozenset(
    {
        "CreateTopics",
        "DeleteTopics",
        "AlterTopicConfig",
        "CreatePartitions",
        "DeleteGroup",
        "ResetOffsets",
        "CreateAcls",
        "DeleteAcls",
        "CreateUser",
        "DeleteUser",
        "SetQuota",
    }
)


class AuditLog:
    """Structured lines (``key=value``), at most ``per_second`` a second; the next line
    after a burst says how many were dropped."""

    def __init__(self, per_second: int = 20) -> None:
        self._per_second = per_second
        self._lock = threading.Lock()
        self._window = 0
        self._count = 0
        self._dropped = 0

    def line(self, **fields: object) -> None:
        with self._lock:
            window = int(time.monotonic())
            if window != self._window:
                self._window, self._count = window, 0
            self._count += 1
            if self._count > self._per_second:
                self._dropped += 1
                return
            dropped, self._dropped = self._dropped, 0
        text = " ".join(
            f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in fields.items()
        )
        if dropped:
            text += f" dropped_before={dropped}"
        audit_log.info("%s", text)


def certificate_principal(context: Any) -> str:
    """The client certificate's CN, else its first SAN ("" without a certificate)."""
    try:
        props = context.auth_context()
    except Exception:
        return ""
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        values = props.get(key) or []
        if values:
            return bytes(values[0]).decode(errors="replace")
    return ""


class _OpenStream:
    __slots__ = ("checks", "principal", "revoked", "task")

    def __init__(self, task: asyncio.Task[Any] | None, principal: str, checks: list[Any]):
        self.task = task
        self.principal = principal
        self.checks = checks
        self.revoked: LogstreamError | None = None


class Authorizer(HandlerWrapper):
    def __init__(self, acls: AclStore) -> None:
        self.acls = acls
        self.audit = AuditLog()
        self.denied = 0
        self._streams: set[_OpenStream] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- decisions ---------------------------------------------------------------------------

    def first_refusal(self, principal: str, method: str, message: Any) -> LogstreamError | None:
        checks = CHECKS.get(method)
        if checks is None:
            return self._denied(
                principal,
                method,
                ClusterAuthorizationFailedError(f"{method} is open to super users only"),
            )
        for rtype, name, op in checks(message):
            if not self.acls.allowed(principal, rtype, name, op):
                return self._denied(principal, method, refusal(rtype, name, op), rtype, name, op)
        if method.rpartition("/")[2] in AUDITED:
            self.audit.line(event="allowed", principal=principal, method=method)
        return None

    def _denied(
        self, principal: str, method: str, err: LogstreamError, *resource: str
    ) -> LogstreamError:
        self.denied += 1
        extra = dict(zip(("resource_type", "name", "operation"), resource, strict=False))
        self.audit.line(event="denied", principal=principal, method=method, **extra)
        return err

    def filter(self, principal: str, method: str, response: Any) -> None:
        keep = FILTERS.get(method)
        if keep is not None and response is not None:
            keep(response, lambda t, n, o: self.acls.allowed(principal, t, n, o))

    # -- revocation of open streams ------------------------------------------------------------

    def rules_changed(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._recheck_streams)

    def _recheck_streams(self) -> None:
        for stream in list(self._streams):
            if stream.revoked is None and not self._still_allowed(stream) and stream.task:
                stream.task.cancel()

    def _still_allowed(self, stream: _OpenStream) -> bool:
        for rtype, name, op in stream.checks:
            if not self.acls.allowed(stream.principal, rtype, name, op):
                stream.revoked = refusal(rtype, name, op)
                self._denied(stream.principal, "Subscribe (open)", stream.revoked, rtype, name, op)
                return False
        return True

    # -- handler wrapping ----------------------------------------------------------------------

    def _admit(self, request: Any, method: str, principal: str) -> LogstreamError | None:
        """The refusal of a unary call (its budget bytes released), or None."""
        message = getattr(request, "message", None)
        if message is None:  # undecodable: the inner handler answers it
            return None
        err = self.first_refusal(principal, method, message)
        if err is not None:
            request.release()
        return err

    def _sync_unary(self, inner: Any, method: str, principal_of: Any) -> Any:
        def handler(request: Any, context: Any) -> Any:
            principal = principal_of(context)
            err = self._admit(request, method, principal)
            if err is not None:
                abort_with(context, err)
            response = inner(request, context)
            self.filter(principal, method, response)
            return response

        return handler

    def _async_unary(self, inner: Any, method: str, principal_of: Any) -> Any:
        async def handler(request: Any, context: Any) -> Any:
            principal = principal_of(context)
            err = self._admit(request, method, principal)
            if err is not None:
                await abort_with_async(context, err)
            response = await inner(request, context)
            self.filter(principal, method, response)
            return response

        return handler

    def _stream_stream(self, inner: Any, method: str, principal_of: Any) -> Any:
        async def checked(requests: AsyncIterator[Any], principal: str) -> AsyncIterator[Any]:
            async for item in requests:
                message = getattr(item, "message", None)
                if message is not None:
                    err = self.first_refusal(principal, method, message)
                    if err is not None:
                        item.release()
                        raise err
                yield item

        async def handler(requests: Any, context: Any) -> AsyncIterator[Any]:
            async for response in inner(checked(requests, principal_of(context)), context):
                yield response

        return handler

    def _unary_stream(self, inner: Any, method: str, principal_of: Any) -> Any:
        async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
            message = getattr(request, "message", None)
            principal = principal_of(context)
            if message is None:
                async for response in inner(request, context):
                    yield response
                return
            err = self.first_refusal(principal, method, message)
            if err is not None:
                request.release()
                await abort_with_async(context, err)
            self._loop = asyncio.get_running_loop()
            stream = _OpenStream(asyncio.current_task(), principal, CHECKS[method](message))
            self._streams.add(stream)
            seen = self.acls.generation
            try:
                async for response in inner(request, context):
                    if self.acls.generation != seen:
                        seen = self.acls.generation
                        if not self._still_allowed(stream):
                            break
                    yield response
            except asyncio.CancelledError:
                if stream.revoked is None:
                    raise
                if stream.task is not None:
                    stream.task.uncancel()
            finally:
                self._streams.discard(stream)
            if stream.revoked is not None:
                await abort_with_async(context, stream.revoked)

        return handler
