"""Small parsers for command-line values, and the click types that wrap them.

Pure functions raise ``ValueError`` with a one-line message; the ``click.ParamType`` wrappers
turn that into a usage error (exit code 2) naming the option.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO, Any

import click

from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.replay import timespec

OUTPUT_MODES = ("table", "json", "jsonl", "plain")


def parse_partitions(text: str) -> list[int]:
    """``"0,3-5"`` -> ``[0, 3, 4, 5]`` (sorted, without duplicates)."""
    out: set[int] = set()
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise ValueError(f"bad partition list {text!r}: empty item")
        lo_s, sep, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if sep else lo
        except ValueError:
            raise ValueError(
                f"bad partition list {text!r}: expected numbers and ranges like 0,3-5"
            ) from None
        if lo < 0 or hi < lo:
            raise ValueError(f"bad partition range {part!r} in {text!r}")
        if hi - lo > 100_000:
            raise ValueError(f"partition range {part!r} is too large")
        out.update(range(lo, hi + 1))
    return sorted(out)


def parse_key_value(text: str, *, what: str = "value") -> tuple[str, str]:
    """``"k=v"`` -> ``("k", "v")``; the value may contain ``=``; the key may not be empty."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"bad {what} {text!r}: expected key=value")
    return key, value


def parse_rate(text: str) -> float:
    """``"50/s"``, ``"50"``, ``"600/m"``, ``"1000/h"`` -> records per second (> 0)."""
    num, _, unit = text.strip().partition("/")
    per = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}.get(
        unit.strip().lower()
    )
    try:
        n = float(num)
    except ValueError:
        n = -1.0
    if per is None or n <= 0:
        raise ValueError(f"bad rate {text!r}: expected N/s, N/m or N/h with N > 0, e.g. 50/s")
    return n / per


def parse_sample(text: str) -> int:
    """``"1/100"``, ``"100"``, ``"1%"``, ``"0.01"`` -> keep one record in every N (N >= 1)."""
    s = text.strip()
    try:
        if "/" in s:
            a, b = s.split("/", 1)
            if int(a) != 1:
                raise ValueError
            n = int(b)
        elif s.endswith("%"):
            n = round(100 / float(s[:-1]))
        elif "." in s:
            n = round(1 / float(s))
        else:
            n = int(s)
    except (ValueError, ZeroDivisionError):
        n = 0
    if n < 1:
        raise ValueError(f"bad sample {text!r}: expected 1/N (e.g. 1/100), N, a fraction or P%")
    return n


def parse_host_port(text: str) -> str:
    """``"127.0.0.1:7070"``, ``"[::1]:7070"``, ``"localhost:0"`` -> the same text, checked:
    a host, a colon and a port in 0-65535."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or host in ("[", "[]"):
        raise ValueError(f"bad address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:7070")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad address {text!r}: the port must be a number from 0 to 65535")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"bad address {text!r}: write an IPv6 host in brackets, e.g. [::1]:7070")
    return text.strip()


def parse_brokers(text: str) -> str:
    """A comma-separated list of HOST:PORT, each checked."""
    return ",".join(parse_host_port(item) for item in text.split(","))


def is_tty(stream: IO[Any]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def use_colour(stream: IO[Any], requested: bool | None = None) -> bool:
    """Colour when asked for, else only on a TTY and when NO_COLOR is unset (no-color.org)."""
    if requested is not None:
        return requested
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return is_tty(stream)


def default_output(stream: IO[Any]) -> str:
    """``table`` for people (a TTY), ``plain`` for pipes."""
    return "table" if is_tty(stream) else "plain"


# --------------------------------------------------------------------------------------------
# click types


class FnType(click.ParamType):
    """A click type from a parse function that raises ValueError with a one-line message."""

    def __init__(self, name: str, fn: Callable[[str], Any]) -> None:
        self.name = name
        self._fn = fn

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._fn(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


PARTITIONS = FnType("PARTITIONS", parse_partitions)
KEY_VALUE = FnType("KEY=VALUE", lambda s: parse_key_value(s))
RATE = FnType("N/s", parse_rate)
SAMPLE = FnType("1/N", parse_sample)
HOST_PORT = FnType("HOST:PORT", parse_host_port)
BROKERS = FnType("HOST:PORT", parse_brokers)


def _clock(ctx: click.Context | None) -> Clock:
    obj = ctx.find_root().obj if ctx is not None else None
    clock = getattr(obj, "clock", None)
    return clock if clock is not None else SYSTEM_CLOCK


class _TimeSpecType(click.ParamType):
    """Parses with the clock of the root context object, so tests can pin "now"."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self._fn = fn

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._fn(value, now_ms=_clock(ctx).now_ms())
        except timespec.TimeSpecError as exc:
            self.fail(str(exc), param, ctx)


START = _TimeSpecType("beginning|end|N|-N|+N|@TIME", timespec.parse_start)
STOP = _TimeSpecType("end|N|+N|@TIME", timespec.parse_stop)
SINCE = _TimeSpecType("DURATION|TIME", timespec.parse_since)
TIME = _TimeSpecType("TIME", timespec.parse_time)
AT_TIME = _TimeSpecType(
    "TIME", lambda s, now_ms: timespec.parse_time(s[1:] if s.startswith("@") else s, now_ms=now_ms)
)

# The ``-o`` option of the commands that print rows (``topic``, ``group``).
output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUT_MODES),
    default=None,
    help="table (default on a TTY), plain (tab-separated, default when piped), json, jsonl.",
)


def header_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--header/-H NAME=VALUE``, repeatable, into ``headers`` as (name, value) pairs."""
    return click.option(
        "--header",
        "-H",
        "headers",
        type=KEY_VALUE,
        multiple=True,
        metavar="NAME=VALUE",
        help=help,
    )
