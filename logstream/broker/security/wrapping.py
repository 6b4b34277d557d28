"""Wrapping a method handler built by ``logstream.broker.rpc`` in one of the same kind.

:class:`HandlerWrapper` holds the part the authorizer and the throttle share: look at the
handler's kind, wrap its behaviour with the subclass's method for that kind, and rebuild a
handler with the same (de)serializers. A plain unary method stays plain (it runs in the
server's thread pool), a coroutine stays on the loop. No client-streaming methods exist
(``rpc.py`` refuses them), so such a handler passes through untouched.

``principal_of(context)`` names who is calling; the interceptor supplies it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

PrincipalOf = Callable[[Any], str]
Behaviour = Callable[..., Any]


class HandlerWrapper:
    """Subclasses give one wrapper per handler kind; :meth:`wrap` picks and applies it."""

    def _sync_unary(self, inner: Behaviour, method: str, principal_of: PrincipalOf) -> Behaviour:
        raise NotImplementedError

    def _async_unary(self, inner: Behaviour, method: str, principal_of: PrincipalOf) -> Behaviour:
        raise NotImplementedError

    def _unary_stream(self, inner: Behaviour, method: str, principal_of: PrincipalOf) -> Behaviour:
        raise NotImplementedError

    def _stream_stream(self, inner: Behaviour, method: str, principal_of: PrincipalOf) -> Behaviour:
        raise NotImplementedError

    def wrap(self, handler: Any, method: str, principal_of: PrincipalOf) -> Any:
        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.request_streaming and handler.response_streaming:
            behaviour = self._stream_stream(handler.stream_stream, method, principal_of)
            return grpc.stream_stream_rpc_method_handler(behaviour, **kw)
        if handler.response_streaming:
            behaviour = self._unary_stream(handler.unary_stream, method, principal_of)
            return grpc.unary_stream_rpc_method_handler(behaviour, **kw)
        if handler.request_streaming:
            return handler
        inner = handler.unary_unary
        wrap = self._async_unary if asyncio.iscoroutinefunction(inner) else self._sync_unary
        return grpc.unary_unary_rpc_method_handler(wrap(inner, method, principal_of), **kw)
