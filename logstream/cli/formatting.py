"""Turning records into text: the human line, templates (named fields and kcat tokens), and
JSON lines. Pure: every formatter is ``Record -> str`` (the full output, newline included).

Rules that hold for every format:

- Text that came off the wire never reaches the terminal raw: control characters (ESC, CR,
  newlines...) are escaped as ``\\x1b``, ``\\r``, ``\\n``, so a record cannot move the cursor,
  recolour the screen or break the one-record-per-line contract of pipes.
- Bytes that are not UTF-8 are shown as ``hex:0a1b...`` or ``base64:...`` (``binary`` option);
  in JSON lines they become base64 with a ``"value_encoding": "base64"`` marker.
- Colour only when the caller says so (on a TTY; see :func:`logstream.cli.params.use_colour`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import click

from logstream.types import Headers, Record

__all__ = [
    "BINARY_MODES",
    "Formatter",
    "HumanFormatter",
    "JsonlFormatter",
    "TemplateError",
    "TemplateFormatter",
    "format_time",
    "format_time_iso",
    "record_to_json",
    "safe_text",
]

BINARY_MODES = ("hex", "base64")


class TemplateError(ValueError):
    """A --format template that does not parse; the message names the bad piece."""


class Formatter(Protocol):
    def __call__(self, record: Record) -> str: ...


# --------------------------------------------------------------------------------------------
# Bytes and time

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_control(text: str, keep_newlines: bool = False) -> str:
    def sub(m: re.Match[str]) -> str:
        ch = m.group(0)
        if keep_newlines and ch == "\n":
            return ch
        named = _NAMED_ESCAPES.get(ch)
        if named:
            return named
        return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"

    return _CONTROL.sub(sub, text)


def _decode(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def render_binary(data: bytes, binary: str = "hex") -> str:
    if binary == "base64":
        return "base64:" + base64.b64encode(data).decode("ascii")
    return "hex:" + binascii.hexlify(data).decode("ascii")


def safe_text(data: bytes | None, *, binary: str = "hex", null: str = "") -> str:
    """Bytes as one safe line of text: UTF-8 with control characters escaped, else hex/base64."""
    if data is None:
        return null
    text = _decode(data)
    if text is None:
        return render_binary(data, binary)
    return _escape_control(text)


def format_time(ms: int, tz: dt.tzinfo | None = None) -> str:
    """``2024-05-01 12:00:00.123`` in ``tz`` (None: local); a ``Z`` suffix for UTC."""
    t = _to_datetime(ms, tz)
    out = t.strftime("%Y-%m-%d %H:%M:%S") + f".{t.microsecond // 1000:03d}"
    return out + "Z" if tz is dt.UTC else out


def format_time_iso(ms: int, tz: dt.tzinfo | None = None) -> str:
    """ISO-8601 with milliseconds and offset: ``2024-05-01T12:00:00.123Z`` / ``...+02:00``."""
    text = _to_datetime(ms, tz).isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _to_datetime(ms: int, tz: dt.tzinfo | None) -> dt.datetime:
    try:
        base = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        base = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    return base.astimezone(tz) if tz is not None else base.astimezone()


# --------------------------------------------------------------------------------------------
# JSON values


def _try_json(text: str) -> Any:
    s = text.lstrip()
    if not s or s[0] not in "{[":
        return _NOT_JSON
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


_NOT_JSON = object()

_JSON_STYLE: dict[str, dict[str, Any]] = {
    "key": {"fg": "blue", "bold": True},
    "str": {"fg": "green"},
    "num": {"fg": "cyan"},
    "lit": {"fg": "magenta"},
}


def render_json(value: Any, *, colour: bool, indent: int | None, level: int = 0) -> str:
    """Render a parsed JSON value, optionally indented and coloured like jq."""

    def style(text: str, kind: str) -> str:
        return click.style(text, **_JSON_STYLE[kind]) if colour else text

    def scalar(v: Any, kind: str = "str") -> str:
        if isinstance(v, str):
            return style(_escape_control(json.dumps(v, ensure_ascii=False)), kind)
        if v is None or isinstance(v, bool):
            return style(json.dumps(v), "lit")
        return style(json.dumps(v), "num")

    if isinstance(value, dict):
        items = [
            f"{scalar(k, 'key')}: {render_json(v, colour=colour, indent=indent, level=level + 1)}"
            for k, v in value.items()
        ]
        return _join(items, "{", "}", indent, level)
    if isinstance(value, list):
        items = [render_json(v, colour=colour, indent=indent, level=level + 1) for v in value]
        return _join(items, "[", "]", indent, level)
    return scalar(value)


def _join(items: list[str], open_: str, close: str, indent: int | None, level: int) -> str:
    if not items:
        return open_ + close
    if indent is None:
        return open_ + ", ".join(items) + close
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    return open_ + "\n" + ",\n".join(pad + i for i in items) + "\n" + end + close


# --------------------------------------------------------------------------------------------
# The human line


@dataclass
class HumanFormatter:
    """``TIME  [TOPIC ]P:OFFSET  KEY  VALUE  [k=v ...]``.

    ``pretty`` renders JSON values indented (on a TTY; else one line). Null keys show as
    ``-``, null values as ``(null)``.
    """

    colour: bool = False
    show_topic: bool = False
    tz: dt.tzinfo | None = None
    pretty: bool = False
    binary: str = "hex"

    def _s(self, text: str, **style: Any) -> str:
        return click.style(text, **style) if self.colour else text

    def __call__(self, record: Record) -> str:
        parts = [self._s(format_time(record.timestamp_ms, self.tz), dim=True)]
        where = f"{record.partition}:{record.offset}"
        if self.show_topic:
            where = f"{record.topic} {where}"
        parts.append(self._s(where, fg="cyan"))
        if record.key is None:
            parts.append(self._s("-", dim=True))
        else:
            parts.append(self._s(safe_text(record.key, binary=self.binary), fg="yellow"))
        parts.append(self._value(record.value))
        if record.headers:
            parts.append(self._s(_headers_text(record.headers, self.binary), dim=True))
        return "  ".join(parts) + "\n"

    def _value(self, value: bytes | None) -> str:
        if value is None:
            return self._s("(null)", dim=True)
        text = _decode(value)
        if text is None:
            return self._s(render_binary(value, self.binary), fg="magenta")
        if self.colour or self.pretty:
            parsed = _try_json(text)
            if parsed is not _NOT_JSON:
                return render_json(parsed, colour=self.colour, indent=2 if self.pretty else None)
        return _escape_control(text)


def _headers_text(headers: Headers, binary: str = "hex", sep: str = " ") -> str:
    return sep.join(
        f"{_escape_control(name)}={safe_text(value, binary=binary)}" for name, value in headers
    )


# --------------------------------------------------------------------------------------------
# JSON lines


def json_bytes(out: dict[str, Any], field: str, data: bytes | None) -> None:
    """``out[field]`` as in the JSONL schema: null, the UTF-8 text, or base64 with
    ``<field>_encoding: "base64"``."""
    if data is None:
        out[field] = None
        return
    text = _decode(data)
    if text is None:
        out[field] = base64.b64encode(data).decode("ascii")
        out[f"{field}_encoding"] = "base64"
    else:
        out[field] = text


def record_to_json(record: Record, tz: dt.tzinfo | None = dt.UTC) -> dict[str, Any]:
    """A record as a JSON-ready dict (the ``--output jsonl`` schema, documented in docs/cli.md).

    Headers become an object; a name that repeats maps to a list of its values in order.
    Non-UTF-8 bytes are base64 with a ``<field>_encoding`` marker.
    """
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
        "time": format_time_iso(record.timestamp_ms, tz),
    }
    json_bytes(out, "key", record.key)
    json_bytes(out, "value", record.value)
    headers: dict[str, Any] = {}
    for name, value in record.headers:
        text = _decode(value)
        v = text if text is not None else "base64:" + base64.b64encode(value).decode("ascii")
        if name in headers:
            prev = headers[name]
            headers[name] = [*prev, v] if isinstance(prev, list) else [prev, v]
        else:
            headers[name] = v
    out["headers"] = headers
    return out


@dataclass
class JsonlFormatter:
    tz: dt.tzinfo | None = dt.UTC

    def __call__(self, record: Record) -> str:
        return json.dumps(record_to_json(record, self.tz), ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------
# Templates

_FIELDS = ("topic", "partition", "offset", "timestamp", "key", "value", "headers", "header")
_KCAT = {
    "t": "topic",
    "p": "partition",
    "o": "offset",
    "T": "timestamp",
    "k": "key",
    "s": "value",
    "h": "headers",
    "K": "key_length",
    "S": "value_length",
}
_BACKSLASH = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "0": "\0"}

Piece = Callable[[Record], str]


def _bytes_piece(getter: Callable[[Record], bytes | None], spec: str, binary: str) -> Piece:
    if spec in ("", "text"):
        return lambda r: safe_text(getter(r), binary=binary)
    if spec == "hex":
        return lambda r: binascii.hexlify(getter(r) or b"").decode("ascii")
    if spec == "base64":
        return lambda r: base64.b64encode(getter(r) or b"").decode("ascii")
    if spec == "len":
        return lambda r: str(-1 if getter(r) is None else len(getter(r) or b""))
    raise TemplateError(f"unknown format {spec!r} for a key or value (use text, hex, base64, len)")


def _time_piece(spec: str, tz: dt.tzinfo | None) -> Piece:
    if spec in ("", "ms"):
        return lambda r: str(r.timestamp_ms)
    if spec == "s":
        return lambda r: str(r.timestamp_ms // 1000)
    if spec == "iso":
        return lambda r: format_time_iso(r.timestamp_ms, tz)
    if spec == "human":
        return lambda r: format_time(r.timestamp_ms, tz)
    if "%" in spec:
        return lambda r: _to_datetime(r.timestamp_ms, tz).strftime(spec)
    raise TemplateError(
        f"unknown timestamp format {spec!r} (use ms, s, iso, human or a strftime pattern)"
    )


def _field_piece(body: str, tz: dt.tzinfo | None, binary: str) -> Piece:
    name, _, spec = body.partition(":")
    name = name.strip()
    if name == "header":
        if not spec:
            raise TemplateError("{header:NAME} needs a header name")
        return lambda r: next((safe_text(v, binary=binary) for k, v in r.headers if k == spec), "")
    if name == "topic":
        return lambda r: _escape_control(r.topic)
    if name == "partition":
        return lambda r: str(r.partition)
    if name == "offset":
        return lambda r: str(r.offset)
    if name == "timestamp":
        return _time_piece(spec, tz)
    if name == "key":
        return _bytes_piece(lambda r: r.key, spec, binary)
    if name == "value":
        return _bytes_piece(lambda r: r.value, spec, binary)
    if name == "headers":
        return lambda r: _headers_text(r.headers, binary, sep=spec or ",")
    if name in ("key_length", "value_length"):
        getter: Callable[[Record], bytes | None] = (
            (lambda r: r.key) if name == "key_length" else (lambda r: r.value)
        )
        return _bytes_piece(getter, "len", binary)
    known = ", ".join("{" + f + ("" if f != "header" else ":NAME") + "}" for f in _FIELDS)
    raise TemplateError(f"unknown field {{{body}}} in --format (known: {known})")


def _next_token(template: str, i: int) -> tuple[str, str, int]:
    """The token at ``template[i]``: ("text", text) or ("field", body), and where the next
    one starts."""
    ch = template[i]
    nxt = template[i + 1] if i + 1 < len(template) else ""
    if ch in "{}" and nxt == ch:
        return "text", ch, i + 2
    if ch == "{":
        end = template.find("}", i + 1)
        if end < 0:
            raise TemplateError(f"unclosed '{{' at position {i} in --format")
        return "field", template[i + 1 : end], end + 1
    if ch == "}":
        raise TemplateError(f"single '}}' at position {i} in --format (write '}}}}')")
    if ch == "%":
        if nxt == "%":
            return "text", "%", i + 2
        if nxt in _KCAT:
            return "field", _KCAT[nxt], i + 2
        tokens = " ".join("%" + k for k in _KCAT)
        raise TemplateError(f"unknown token %{nxt} in --format (kcat tokens: {tokens} %%)")
    if ch == "\\" and nxt in _BACKSLASH:
        return "text", _BACKSLASH[nxt], i + 2
    return "text", ch, i + 1


def _tokens(template: str) -> Iterator[tuple[str, str]]:
    i = 0
    while i < len(template):
        kind, value, i = _next_token(template, i)
        yield kind, value


def _literal(text: str) -> Piece:
    return lambda r: text


def parse_template(
    template: str, *, tz: dt.tzinfo | None = None, binary: str = "hex"
) -> Sequence[Piece]:
    """Compile a template into pieces; raises TemplateError on anything it cannot place."""
    pieces: list[Piece] = []
    literal: list[str] = []
    for kind, value in _tokens(template):
        if kind == "text":
            literal.append(value)
            continue
        if literal:
            pieces.append(_literal("".join(literal)))
            literal.clear()
        pieces.append(_field_piece(value, tz, binary))
    if literal:
        pieces.append(_literal("".join(literal)))
    return pieces


class TemplateFormatter:
    """``--format``: named fields ``{topic} {partition} {offset} {timestamp[:iso|s|ms|human|
    strftime]} {key[:hex|base64|len]} {value[:...]} {header:NAME} {headers}`` and kcat's
    ``%t %p %o %T %k %s %h %K %S %%``; ``\\n`` and ``\\t`` escapes. A newline is added unless
    the template already ends with one."""

    def __init__(self, template: str, *, tz: dt.tzinfo | None = None, binary: str = "hex"):
        self._pieces = parse_template(template, tz=tz, binary=binary)
        expanded = template.replace("\\\\", "").replace("\\n", "\n")
        self._newline = "" if expanded.endswith("\n") else "\n"

    def __call__(self, record: Record) -> str:
        return "".join(p(record) for p in self._pieces) + self._newline
