"""Handler wrapping that applies :class:`~logstream.broker.security.quotas.Quotas`.

Same shape as the authorizer's wrapping (a plain method stays plain and runs in the pool,
a coroutine stays on the loop). A plain method sleeps in its pool thread: those are the
admin and group calls, whose requests count only against the request rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from logstream.broker.security.quotas import THROTTLE_KEY, Quotas

PRODUCE = frozenset({"/logstream.v1.Log/Produce", "/logstream.v1.Log/ProduceStream"})
FETCH = frozenset({"/logstream.v1.Log/Fetch", "/logstream.v1.Log/Subscribe"})


def _size(message: Any) -> int:
    try:
        return int(message.ByteSize())
    except Exception:
        return 0


class Throttle:
    def __init__(self, quotas: Quotas) -> None:
        self.quotas = quotas

    def _delay(self, principal: str, method: str, request: Any, response: Any) -> float:
        q = self.quotas
        wait = q.delay(principal, "requests_per_s", 1)
        if method in PRODUCE:
            wait = max(wait, q.delay(principal, "produce_bytes_per_s", getattr(request, "size", 0)))
        elif method in FETCH and response is not None:
            wait = max(wait, q.delay(principal, "fetch_bytes_per_s", _size(response)))
        return wait

    def wrap(self, handler: Any, method: str, principal_of: Callable[[Any], str]) -> Any:
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                self._stream_stream(handler.stream_stream, method, principal_of),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(handler.unary_stream, method, principal_of),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.request_streaming:
            return handler
        inner = handler.unary_unary
        wrap = self._async_unary if asyncio.iscoroutinefunction(inner) else self._sync_unary
        return grpc.unary_unary_rpc_method_handler(
            wrap(inner, method, principal_of),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _sync_unary(self, inner: Any, method: str, principal_of: Any) -> Any:
        def handler(request: Any, context: Any) -> Any:
            size = getattr(request, "size", 0)
            response = inner(request, context)
            wait = self._delay(principal_of(context), method, _Sized(size), response)
            if wait:
                context.set_trailing_metadata(((THROTTLE_KEY, str(int(wait * 1000))),))
                time.sleep(wait)
            return response

        return handler

    def _async_unary(self, inner: Any, method: str, principal_of: Any) -> Any:
        async def handler(request: Any, context: Any) -> Any:
            size = getattr(request, "size", 0)
            response = await inner(request, context)
            wait = self._delay(principal_of(context), method, _Sized(size), response)
            if wait:
                context.set_trailing_metadata(((THROTTLE_KEY, str(int(wait * 1000))),))
                await asyncio.sleep(wait)
            return response

        return handler

    def _stream_stream(self, inner: Any, method: str, principal_of: Any) -> Any:
        async def paced(requests: AsyncIterator[Any], principal: str) -> AsyncIterator[Any]:
            async for item in requests:
                wait = self._delay(principal, method, item, None)
                if wait:
                    await asyncio.sleep(wait)
                yield item

        async def handler(requests: Any, context: Any) -> AsyncIterator[Any]:
            async for response in inner(paced(requests, principal_of(context)), context):
                yield response

        return handler

    def _unary_stream(self, inner: Any, method: str, principal_of: Any) -> Any:
        async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
            principal = principal_of(context)
            wait = self.quotas.delay(principal, "requests_per_s", 1)
            if wait:
                await asyncio.sleep(wait)
            async for response in inner(request, context):
                wait = self.quotas.delay(principal, "fetch_bytes_per_s", _size(response))
                if wait:
                    await asyncio.sleep(wait)
                yield response

        return handler


class _Sized:
    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size
