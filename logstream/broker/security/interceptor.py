"""Authentication at the broker's edge: one ``grpc.aio`` server interceptor.

Each call is authenticated before its handler is looked at:

- ``authorization: Bearer <token>`` metadata: the token must verify against the
  :class:`CredentialStore`; the principal is the token's user.
- no token, on a mutual-TLS port: the transport already verified the client's certificate,
  so the call is accepted (the principal is the certificate's CN or SAN).
- otherwise: UNAUTHENTICATED / ``SASL_AUTHENTICATION_FAILED``.

Health checks are exempt (load balancers probe without credentials).

Costs: a token is verified with scrypt once; later calls with the same token are a dict
lookup (keyed by its SHA-256, dropped when the store is reloaded), and calls that arrive
while it is being verified share that one check. scrypt runs in a worker
thread, at most ``MAX_CONCURRENT_CHECKS`` at a time, so a flood of bad tokens cannot take
the event loop or every core. A failed attempt is answered only after a delay that doubles
with each recent failure from the same peer (up to ``MAX_FAILURE_DELAY_S``); the answer
never repeats the token.

Concurrency: ``intercept_service`` runs on the server's event loop; the cache and the
failure counters are touched only there.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health

from logstream.broker.rpc import RateLimitedLog
from logstream.broker.security.authorize import Authorizer, certificate_principal
from logstream.broker.security.credentials import CredentialStore
from logstream.broker.security.rules import OPEN_TO_EVERY_PRINCIPAL
from logstream.broker.security.throttle import Throttle
from logstream.errors import AuthenticationFailedError
from logstream.protocol.status import abort_with_async

log = logging.getLogger("logstream.broker.security")

MAX_CONCURRENT_CHECKS = 2
MAX_CACHED_TOKENS = 10_000
FIRST_FAILURE_DELAY_S = 0.05
MAX_FAILURE_DELAY_S = 2.0
FAILURE_MEMORY_S = 60.0
EXEMPT_PREFIXES = (f"/{health.SERVICE_NAME}/",)

Handler = Any  # grpc.RpcMethodHandler (untyped in grpc-stubs)
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]


def bearer_token(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        store: CredentialStore | None,
        *,
        mutual_tls: bool,
        authorizer: Authorizer | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.store = store
        self.mutual_tls = mutual_tls
        self.authorizer = authorizer
        self.throttle = throttle
        self.failed_logins = 0
        self._cache: dict[bytes, tuple[int, str]] = {}
        self._verifying: dict[bytes, asyncio.Future[str | None]] = {}
        self._checks = asyncio.Semaphore(MAX_CONCURRENT_CHECKS)
        self._recent_failures: dict[str, tuple[int, float]] = {}
        self._audit = RateLimitedLog(log, 10.0)

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> Handler:
        method = details.method
        if method.startswith(EXEMPT_PREFIXES):
            return await continuation(details)
        token = bearer_token(details.invocation_metadata)
        if token is None:
            if not self.mutual_tls:
                return self._refuse(await continuation(details), method, "no credentials")
            return self._authorized(await continuation(details), method, certificate_principal)
        principal = await self._principal(token) if token else None
        if principal is None:
            return self._refuse(await continuation(details), method, "invalid token")
        return self._authorized(await continuation(details), method, lambda _: principal)

    def _authorized(self, handler: Handler, method: str, principal_of: Any) -> Handler:
        if handler is None or method.startswith(OPEN_TO_EVERY_PRINCIPAL):
            return handler
        if self.authorizer is not None:
            handler = self.authorizer.wrap(handler, method, principal_of)
        if self.throttle is not None and self.throttle.quotas.active:
            handler = self.throttle.wrap(handler, method, principal_of)
        return handler

    async def _principal(self, token: str) -> str | None:
        if self.store is None:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] == self.store.generation:
            return cached[1]
        # Calls that arrive with the same token while it is being verified (a busy client
        # right after a user change emptied the cache) wait for that one scrypt.
        pending = self._verifying.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        generation = self.store.generation
        task = asyncio.ensure_future(self._verify(token))
        self._verifying[digest] = task
        try:
            principal = await asyncio.shield(task)
        finally:
            self._verifying.pop(digest, None)
        if principal is not None:
            if len(self._cache) >= MAX_CACHED_TOKENS:
                self._cache.clear()
            self._cache[digest] = (generation, principal)
        return principal

    async def _verify(self, token: str) -> str | None:
        assert self.store is not None
        async with self._checks:
            return await asyncio.to_thread(self.store.verify, token)

    def _refuse(self, handler: Handler, method: str, reason: str) -> Handler:
        self.failed_logins += 1
        interceptor = self

        async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            delay = interceptor._failure_delay(context.peer())
            interceptor._audit.warning(
                "authentication failed: %s from %s calling %s", reason, context.peer(), method
            )
            await asyncio.sleep(delay)
            await abort_with_async(
                context,
                AuthenticationFailedError(
                    f"{reason}: send a valid token (authorization: Bearer ...)"
                    + (" or a client certificate" if self.mutual_tls else "")
                ),
            )

        if handler is None:
            return grpc.unary_unary_rpc_method_handler(refuse)
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(refuse)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(refuse)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(refuse)
        return grpc.unary_unary_rpc_method_handler(refuse)

    def _failure_delay(self, peer: str) -> float:
        host = peer.rpartition(":")[0] or peer
        now = time.monotonic()
        count, last = self._recent_failures.get(host, (0, now))
        if now - last > FAILURE_MEMORY_S:
            count = 0
        count += 1
        if len(self._recent_failures) > MAX_CACHED_TOKENS:
            self._recent_failures.clear()
        self._recent_failures[host] = (count, now)
        return float(min(FIRST_FAILURE_DELAY_S * 2 ** (count - 1), MAX_FAILURE_DELAY_S))

    def forget_tokens(self) -> None:
        """Drop cached verifications (the store was reloaded: a removed user stops now)."""
        self._cache.clear()
