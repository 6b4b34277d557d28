"""Kafka request and response frames, and the API versions this listener speaks.

A frame on the TCP stream (big-endian)::

    size i32                 bytes that follow
    request header           api_key i16, api_version i16, correlation_id i32,
                             client_id nullable string (i16 length); in flexible
                             versions followed by tagged fields (header v2, else v1)
    request body             the schema of (api_key, api_version)

A response frame is ``size i32``, the response header (correlation_id i32, plus tagged
fields in flexible versions, header v1; ApiVersions always answers with header v0) and
the body. The header and body types come from ``kio`` (generated from Kafka's own JSON
message schemas); this module only picks the class for a version and calls its reader or
writer.

Decoding errors are :class:`FrameError` (the listener closes such a connection, as Kafka
does); an API key or version outside :data:`SUPPORTED` is :class:`UnsupportedVersion`
(answered, when the header could be read, with UNSUPPORTED_VERSION where Kafka's rules
allow an answer: ApiVersions always gets one).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer
from kio.serial.errors import SerialError

from logstream.kafka import fast_encode

SIZE = struct.Struct(">i")
_PREFIX = struct.Struct(">hhi")  # api_key, api_version, correlation_id

# API keys (Kafka's numbering).
PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
OFFSET_COMMIT = 8
OFFSET_FETCH = 9
FIND_COORDINATOR = 10
JOIN_GROUP = 11
HEARTBEAT = 12
LEAVE_GROUP = 13
SYNC_GROUP = 14
DESCRIBE_GROUPS = 15
LIST_GROUPS = 16
SASL_HANDSHAKE = 17
API_VERSIONS = 18
CREATE_TOPICS = 19
DELETE_TOPICS = 20
INIT_PRODUCER_ID = 22
DESCRIBE_CONFIGS = 32
SASL_AUTHENTICATE = 36
CREATE_PARTITIONS = 37

SUPPORTED: dict[int, tuple[int, int]] = {
    PRODUCE: (3, 8),  # v9 is flexible; 3-8 have a hand-packed encoder (fast_encode.py)
    FETCH: (4, 11),
    LIST_OFFSETS: (1, 7),
    # v9+ are flexible; librdkafka 2.16's admin client sends v10 bodies ending in
    # 01 00 00 00: a tagged section with an empty tag 0 the schema does not define, then one
    # more byte. Kafka skips both; kio refuses the tag (see _without_unknown_tags). Its v11-12
    # bodies are followed by 01 00 00, which Kafka ignores: parse_request allows bytes after
    # a Metadata body.
    METADATA: (0, 12),
    API_VERSIONS: (0, 4),
    INIT_PRODUCER_ID: (0, 4),
}
"""api_key -> (min, max) version answered; the table ApiVersions reports. Filled further by
the modules that add APIs (groups, admin) through :func:`register`."""

UNSUPPORTED_VERSION = 35

_FAST: dict[int, Callable[[int, Any], bytes]] = {
    PRODUCE: fast_encode.produce_response,
    FETCH: fast_encode.fetch_response,
}
"""Responses packed by hand: the hot path (see fast_encode.py). Their version ranges in
SUPPORTED must stay non-flexible."""


class FrameError(Exception):
    """A frame that cannot be decoded: the listener closes the connection. Internal to the
    listener (the client sees a disconnect, as from Kafka), so not a LogstreamError."""


class UnsupportedVersion(Exception):
    """An API key or version this listener does not speak; answered UNSUPPORTED_VERSION."""


def register(api_key: int, versions: tuple[int, int]) -> None:
    SUPPORTED[api_key] = versions


@dataclass(frozen=True, slots=True)
class Request:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any
    principal: str = ""  # who the connection authenticated as ("" without authentication)


def peek_header(frame: bytes) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) of a frame (without its size prefix)."""
    if len(frame) < _PREFIX.size:
        raise FrameError(f"request of {len(frame)} bytes is shorter than a request header")
    key, version, correlation_id = _PREFIX.unpack_from(frame)
    return int(key), int(version), int(correlation_id)


def check_version(api_key: int, api_version: int) -> None:
    versions = SUPPORTED.get(api_key)
    if versions is None:
        raise UnsupportedVersion(f"API key {api_key} is not supported")
    if not versions[0] <= api_version <= versions[1]:
        raise UnsupportedVersion(
            f"API key {api_key} version {api_version} is not supported "
            f"(versions {versions[0]}-{versions[1]})"
        )


@cache
def _request_io(api_key: int, api_version: int) -> tuple[Any, Any]:
    cls = load_request_schema(api_key, api_version)
    return entity_reader(cls.__header_schema__), entity_reader(cls)


@cache
def _response_io(api_key: int, api_version: int) -> tuple[type, Any, Any, Any]:
    cls = load_response_schema(api_key, api_version)
    header = cls.__header_schema__
    return cls, header, entity_writer(header), entity_writer(cls)


def parse_request(frame: bytes) -> Request:
    """Decode a whole request frame (size prefix removed). Raises FrameError or
    UnsupportedVersion. Bytes after the body are an error, but for Metadata (see
    SUPPORTED)."""
    api_key, api_version, _ = peek_header(frame)
    check_version(api_key, api_version)
    read_header, read_body = _request_io(api_key, api_version)
    try:
        header, used = read_header(frame, 0)
        try:
            body, body_size = read_body(frame, used)
        except (SerialError, KeyError) as exc:  # kio raises KeyError for an unknown tag
            if "Unknown tagged field" not in str(exc):
                raise
            frame = _without_unknown_tags(frame, used, read_body, exc)
            body, body_size = read_body(frame, used)
    except (SerialError, ValueError, TypeError, OverflowError, IndexError, KeyError) as exc:
        raise FrameError(f"undecodable request (API {api_key} v{api_version}): {exc}") from exc
    if used + body_size != len(frame) and not (
        api_key == METADATA and used + body_size < len(frame)
    ):
        raise FrameError(
            f"request (API {api_key} v{api_version}) has {len(frame) - used - body_size} "
            "bytes after its body"
        )
    return Request(api_key, api_version, header.correlation_id, header.client_id, body)


def _uvarint(frame: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(frame) and shift < 35:
        b = frame[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos
    raise ValueError("bad unsigned varint")


def _without_unknown_tags(frame: bytes, body_start: int, read_body: Any, exc: Exception) -> bytes:
    """``frame`` with the body's own (last) tagged-field section emptied, for a body whose
    tags kio does not know: Kafka's rule is to skip unknown tags, kio's reader refuses them.

    The section is the latest start, at or after the body, where a count, its tags and
    their sizes fit in the frame and after which the body decodes; bytes after that
    section are dropped, as Kafka's parser ignores them (librdkafka 2.16 sends one after a
    Metadata v10+ body's tags). Nested structs' tags are not touched. ``exc`` is re-raised
    when no such section exists.
    """
    for start in range(len(frame) - 1, body_start - 1, -1):
        try:
            count, pos = _uvarint(frame, start)
            for _ in range(count):
                _, pos = _uvarint(frame, pos)
                size, pos = _uvarint(frame, pos)
                pos += size
        except ValueError:
            continue
        if count == 0 or pos > len(frame):
            continue
        candidate = frame[:start] + b"\x00"
        try:
            _, size = read_body(candidate, body_start)
        except (SerialError, ValueError, TypeError, OverflowError, IndexError, KeyError):
            continue
        if body_start + size == len(candidate):
            return candidate
    raise exc


def response_class(api_key: int, api_version: int) -> type:
    """The kio response class of a version."""
    return _response_io(api_key, api_version)[0]


def response_module(api_key: int, api_version: int) -> Any:
    """The kio module of a response version: the response class and its nested types."""
    return sys.modules[_response_io(api_key, api_version)[0].__module__]


def encode_response(api_key: int, api_version: int, correlation_id: int, body: Any) -> bytes:
    """A whole response frame: size, header, body."""
    if api_key == FETCH:  # the records are copied once, here
        pieces = fast_encode.fetch_response_pieces(api_version, body)
        size = 4 + sum(map(len, pieces))
        return b"".join([SIZE.pack(size), SIZE.pack(correlation_id), *pieces])
    fast = _FAST.get(api_key)
    if fast is not None:  # non-flexible versions only: response header v0
        payload = fast(api_version, body)
        return SIZE.pack(4 + len(payload)) + SIZE.pack(correlation_id) + payload
    _, header_cls, write_header, write_body = _response_io(api_key, api_version)
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    write_header(out, header_cls(correlation_id=correlation_id))
    write_body(out, body)
    frame = out.getbuffer()
    SIZE.pack_into(frame, 0, len(frame) - SIZE.size)
    return bytes(frame)


def encode_raw_response(correlation_id: int, payload: bytes) -> bytes:
    """A header-v0 response frame around an already-encoded body."""
    return SIZE.pack(4 + len(payload)) + SIZE.pack(correlation_id) + payload


_ZERO_BY_KIND: dict[str, Any] = {
    "bool": False,
    "bytes": b"",
    "error_code": 0,
    "float64": 0.0,
    "int8": 0,
    "int16": 0,
    "int32": 0,
    "int64": 0,
    "uint16": 0,
    "string": "",
    "records": None,
}


@cache
def _fields(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(name, kafka_type, has_default) of a kio entity's fields."""
    out = []
    for f in dataclasses.fields(cls):
        has_default = f.default is not dataclasses.MISSING or (
            f.default_factory is not dataclasses.MISSING
        )
        out.append((f.name, str(f.metadata.get("kafka_type", "")), has_default))
    return tuple(out)


def build(cls: type, **values: Any) -> Any:
    """An instance of the kio entity ``cls`` from ``values``, version-tolerant.

    Keys the version does not have are dropped; required fields not given get the type's
    zero (``()`` for arrays, none for an ``uuid``); durations and times may be given as
    milliseconds. This lets one handler answer every version of an API.
    """
    kwargs: dict[str, Any] = {}
    for name, kind, has_default in _fields(cls):
        if name in values:
            value = values[name]
            if kind.startswith("timedelta") and isinstance(value, int):
                value = datetime.timedelta(milliseconds=value)
            elif kind == "datetime_i64" and isinstance(value, int):
                value = datetime.datetime.fromtimestamp(value / 1000, datetime.UTC)
            kwargs[name] = value
        elif not has_default:
            if kind.startswith("timedelta"):
                kwargs[name] = datetime.timedelta(0)
            elif kind in _ZERO_BY_KIND:
                kwargs[name] = _ZERO_BY_KIND[kind]
            elif kind == "uuid":
                kwargs[name] = None
            else:
                kwargs[name] = ()
    return cls(**kwargs)


def ms(value: datetime.timedelta | int) -> int:
    """Milliseconds of a kio duration field (ints pass through)."""
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds() * 1000)
    return int(value)
