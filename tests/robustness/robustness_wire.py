"""Raw calls for the robustness tests: any bytes to any method of any service, and the answer
reduced to what a row checks (a unique module name: importable from any test file).

Requests go through identity serializers, so a test sends exactly the bytes it built
(garbage, truncated messages, duplicated or mistyped fields) and reads raw answer bytes,
decoded here with the method's own output class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from logstream.protocol import (
    admin_pb2,
    group_pb2,
    log_pb2,
    queue_pb2,
    security_pb2,
)
from logstream.protocol.status import ERROR_CODE_KEY

SERVICES: list[ServiceDescriptor] = [
    log_pb2.DESCRIPTOR.services_by_name["Log"],
    admin_pb2.DESCRIPTOR.services_by_name["Admin"],
    group_pb2.DESCRIPTOR.services_by_name["Group"],
    queue_pb2.DESCRIPTOR.services_by_name["Queue"],
    security_pb2.DESCRIPTOR.services_by_name["Security"],
]
METHODS: dict[str, MethodDescriptor] = {
    f"{s.name}.{m.name}": m for s in SERVICES for m in s.methods
}
"""Every method of every service, by ``Service.Method``."""


@dataclass(frozen=True)
class Outcome:
    """What one call came to: the gRPC status, the ``logstream-error-code`` trailing
    metadata (None when absent) and the decoded answers (one per streamed message)."""

    status: grpc.StatusCode
    code: int | None
    answers: tuple[Any, ...]
    details: str = ""


def _trailing_code(metadata: Any) -> int | None:
    for key, value in metadata or ():
        if key == ERROR_CODE_KEY:
            return int(value)
    return None


def call(
    channel: grpc.Channel,
    name: str,
    payload: bytes | Sequence[bytes],
    *,
    token: str | None = None,
    timeout: float = 10.0,
    max_answers: int = 1_000,
) -> Outcome:
    """Send ``payload`` (one message, or a list of messages for ProduceStream) to the
    method ``Service.Method`` and collect the answer. A server stream is read until it
    ends, fails, or has given ``max_answers`` answers (then it is cancelled)."""
    method = METHODS[name]
    path = f"/{method.containing_service.full_name}/{method.name}"
    out_cls = message_factory.GetMessageClass(method.output_type)
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    ident: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}
    answers: list[Any] = []
    if method.client_streaming:
        messages = [payload] if isinstance(payload, bytes) else list(payload)
        it: Any = channel.stream_stream(path, **ident)(
            iter(messages), timeout=timeout, metadata=metadata
        )
    elif method.server_streaming:
        assert isinstance(payload, bytes)
        it = channel.unary_stream(path, **ident)(payload, timeout=timeout, metadata=metadata)
    else:
        assert isinstance(payload, bytes)
        try:
            raw, done = channel.unary_unary(path, **ident).with_call(
                payload, timeout=timeout, metadata=metadata
            )
        except grpc.RpcError as err:
            return _failed(err, ())
        return Outcome(
            grpc.StatusCode.OK, _trailing_code(done.trailing_metadata()), (out_cls.FromString(raw),)
        )
    try:
        for raw in it:
            answers.append(out_cls.FromString(raw))
            if len(answers) >= max_answers:
                it.cancel()
                break
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
            return _failed(err, tuple(answers))
    return Outcome(grpc.StatusCode.OK, _trailing_code(it.trailing_metadata()), tuple(answers))


def _failed(err: grpc.RpcError, answers: tuple[Any, ...]) -> Outcome:
    return Outcome(
        err.code(),  # type: ignore[attr-defined]
        _trailing_code(err.trailing_metadata()),  # type: ignore[attr-defined]
        answers,
        err.details() or "",  # type: ignore[attr-defined]
    )


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_bytes(number: int, value: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(value)) + value


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)
