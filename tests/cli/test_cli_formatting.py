"""Record formatting: the human line, templates with kcat tokens, JSON lines, safety."""

from __future__ import annotations

import datetime as dt
import json

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.cli.formatting import (
    HumanFormatter,
    JsonlFormatter,
    TemplateError,
    TemplateFormatter,
    format_time,
    format_time_iso,
    safe_text,
)
from logstream.types import Record

UTC = dt.UTC
TS = 1_714_557_600_123  # 2024-05-01T10:00:00.123Z


def rec(value: bytes | None = b"hello", key: bytes | None = b"k1", **kw: object) -> Record:
    base = dict(topic="orders", partition=3, offset=42, timestamp_ms=TS, key=key, value=value)
    base.update(kw)
    return Record(**base)  # type: ignore[arg-type]


def test_times_render_for_people_and_as_iso() -> None:
    assert format_time(TS, UTC) == "2024-05-01 10:00:00.123Z"
    assert format_time_iso(TS, UTC) == "2024-05-01T10:00:00.123Z"
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert format_time_iso(TS, plus2) == "2024-05-01T12:00:00.123+02:00"
    assert format_time(TS, plus2) == "2024-05-01 12:00:00.123"


def test_human_line_plain() -> None:
    line = HumanFormatter(tz=UTC)(rec())
    assert line == "2024-05-01 10:00:00.123Z  3:42  k1  hello\n"


def test_human_line_shows_topic_headers_nulls() -> None:
    r = rec(value=None, key=None, headers=(("trace", b"abc"),))
    line = HumanFormatter(tz=UTC, show_topic=True)(r)
    assert line == "2024-05-01 10:00:00.123Z  orders 3:42  -  (null)  trace=abc\n"


def test_human_line_colour_only_when_asked() -> None:
    assert "\x1b[" not in HumanFormatter(tz=UTC)(rec())
    assert "\x1b[" in HumanFormatter(tz=UTC, colour=True)(rec())


def test_json_values_pretty_and_coloured_on_a_tty() -> None:
    r = rec(value=b'{"a": 1, "b": [true, null, "x"]}')
    coloured = HumanFormatter(tz=UTC, colour=True, pretty=True)(r)
    assert '"a"' in click.unstyle(coloured)
    assert "\n  " in coloured  # indented
    compact = HumanFormatter(tz=UTC, colour=True)(r)
    assert click.unstyle(compact).endswith('{"a": 1, "b": [true, null, "x"]}\n')
    plain = HumanFormatter(tz=UTC)(r)
    assert plain.endswith('{"a": 1, "b": [true, null, "x"]}\n')


def test_control_characters_are_escaped() -> None:
    r = rec(value=b"evil\x1b[2Jline\nbreak\r\x07", key=b"\x1b]0;title\x07")
    line = HumanFormatter(tz=UTC)(r)
    assert "\x1b" not in line and "\x07" not in line and "\r" not in line
    assert line.count("\n") == 1
    assert "evil\\x1b[2Jline\\nbreak\\r\\x07" in line


def test_binary_is_shown_as_hex_or_base64() -> None:
    r = rec(value=b"\xff\x00\x10", key=b"\x80")
    assert "hex:ff0010" in HumanFormatter(tz=UTC)(r)
    assert "hex:80" in HumanFormatter(tz=UTC)(r)
    assert "base64:/wAQ" in HumanFormatter(tz=UTC, binary="base64")(r)


@given(st.binary(max_size=200))
def test_safe_text_is_always_one_printable_line(data: bytes) -> None:
    text = safe_text(data)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    line = HumanFormatter(tz=UTC)(rec(value=data, key=data, headers=(("h", data),)))
    assert line.count("\n") == 1 and line.endswith("\n")


def test_jsonl_schema() -> None:
    r = rec(value=b"\xff", headers=(("a", b"1"), ("a", b"2"), ("b", b"x")))
    obj = json.loads(JsonlFormatter()(r))
    assert obj == {
        "topic": "orders",
        "partition": 3,
        "offset": 42,
        "timestamp": TS,
        "time": "2024-05-01T10:00:00.123Z",
        "key": "k1",
        "value": "/w==",
        "value_encoding": "base64",
        "headers": {"a": ["1", "2"], "b": "x"},
    }


@given(st.binary(max_size=100), st.one_of(st.none(), st.binary(max_size=20)))
def test_jsonl_is_one_line_of_valid_json(value: bytes, key: bytes | None) -> None:
    out = JsonlFormatter()(rec(value=value, key=key))
    assert out.endswith("\n") and out.count("\n") == 1
    obj = json.loads(out)
    assert obj["offset"] == 42


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{topic} {partition} {offset} {timestamp}", "orders 3 42 1714557600123\n"),
        ("{timestamp:iso} {key}={value}", "2024-05-01T10:00:00.123Z k1=hello\n"),
        ("{timestamp:s} {timestamp:%H:%M}", "1714557600 10:00\n"),
        ("{header:trace}|{header:missing}|{headers}", "abc||trace=abc,n=1\n"),
        ("{headers: }", "trace=abc n=1\n"),
        ("{value:hex} {value:base64} {value:len} {key:len}", "68656c6c6f aGVsbG8= 5 2\n"),
        ("%k %s %p %o %T %t %K %S %%", "k1 hello 3 42 1714557600123 orders 2 5 %\n"),
        ("%s\\n", "hello\n"),
        ("%s\\t%k", "hello\tk1\n"),
        ("{{literal}} {value}", "{literal} hello\n"),
    ],
)
def test_templates(template: str, expected: str) -> None:
    r = rec(headers=(("trace", b"abc"), ("n", b"1")))
    assert TemplateFormatter(template, tz=UTC)(r) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{nope}", "unknown field"),
        ("{value", "unclosed"),
        ("value}", "single '}'"),
        ("%x", "unknown token %x"),
        ("{timestamp:bogus}", "unknown timestamp format"),
        ("{value:rot13}", "unknown format"),
        ("{header}", "needs a header name"),
    ],
)
def test_bad_templates_name_the_problem(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        TemplateFormatter(template)
