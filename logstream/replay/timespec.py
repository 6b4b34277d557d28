"""The start/stop grammar shared by ``tail``, ``consume``, ``export`` and ``offsets``.

::

    --from   beginning | earliest          the log start of each partition
             end | latest                  the log end (only new records)
             N                             absolute offset N in each partition
             -N                            N records before the end of each partition
             +N                            N records after the start of each partition
             @TIME                         the first record with timestamp >= TIME
    --until  end                           the end offsets snapshotted when the command starts
             N                             stop before offset N (exclusive) in each partition
             +N                            N records per partition after the start position
             @TIME                         stop before the first record with timestamp >= TIME
    --since  DURATION | TIME               shortcut for --from @-DURATION (or @TIME)

    TIME     now | today | yesterday
             2024-05-01 | 2024-05-01T12:00 | 2024-05-01 12:00:00.250+02:00 | ...Z
                                           ISO-8601; without an offset it is local time
             1714557600 | 1714557600123    epoch seconds or milliseconds (see epoch_to_ms)
             -15m | -3d | -1h30m | +10s    relative to now; units ms s m h d w

Everything is pure: "now" comes from an injected ``now_ms`` so tests are deterministic.
Errors are :class:`TimeSpecError` (a ``ValueError``) with a message fit for one line on stderr;
the command line (:mod:`logstream.cli.params`) turns it into a usage error.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

__all__ = [
    "Beginning",
    "End",
    "FromBeginning",
    "FromEnd",
    "Offset",
    "RecordCount",
    "StartSpec",
    "StopSpec",
    "TimeSpecError",
    "Timestamp",
    "check_order",
    "epoch_to_ms",
    "parse_duration_ms",
    "parse_since",
    "parse_start",
    "parse_stop",
    "parse_time",
]


class TimeSpecError(ValueError):
    """A --from/--until/--since/@TIME value that does not parse; the message says why."""


# --------------------------------------------------------------------------------------------
# Positions


@dataclass(frozen=True)
class Beginning:
    """The log start offset of each partition."""


@dataclass(frozen=True)
class End:
    """The log end offset of each partition (at the moment it is resolved)."""


@dataclass(frozen=True)
class Offset:
    """An absolute offset, the same number in every partition."""

    offset: int


@dataclass(frozen=True)
class FromEnd:
    """``count`` records before the end of each partition (``-N``)."""

    count: int


@dataclass(frozen=True)
class FromBeginning:
    """``count`` records after the log start of each partition (``+N``)."""

    count: int


@dataclass(frozen=True)
class Timestamp:
    """The first record whose timestamp is >= ``ms`` (epoch milliseconds)."""

    ms: int


@dataclass(frozen=True)
class RecordCount:
    """Stop after ``count`` records per partition, counted from the start position."""

    count: int


StartSpec = Beginning | End | Offset | FromEnd | FromBeginning | Timestamp
StopSpec = End | Offset | RecordCount | Timestamp

# --------------------------------------------------------------------------------------------
# Durations

_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "sec": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|sec|min|s|m|h|d|w)")


def parse_duration_ms(text: str) -> int:
    """``15m``, ``3d``, ``1h30m``, ``250ms``, ``1.5h`` -> milliseconds (>= 0). No sign."""
    s = text.strip().lower()
    if not s:
        raise TimeSpecError("empty duration")
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        if re.fullmatch(r"\d+(\.\d+)?", s):
            raise TimeSpecError(f"duration {text!r} needs a unit: ms, s, m, h, d or w (e.g. {s}m)")
        raise TimeSpecError(
            f"bad duration {text!r}: expected a number and a unit (ms s m h d w), e.g. 15m, 1h30m"
        )
    return round(total)


# --------------------------------------------------------------------------------------------
# Points in time

_EPOCH_MS_MIN = 10**11  # below: seconds (up to the year 5138); from here: milliseconds (1973+)
_EPOCH_US_MIN = 10**14  # from here: microseconds
_EPOCH_NS_MIN = 10**17  # from here: nanoseconds


def epoch_to_ms(value: float) -> int:
    """Interpret a bare epoch number by its magnitude.

    < 1e11 is seconds (covers 1970..5138), < 1e14 milliseconds, < 1e17 microseconds, else
    nanoseconds. Every real timestamp since 1973 is classified correctly by this rule.
    """
    if value < 0:
        raise TimeSpecError(f"epoch time {value!r} is negative")
    if value < _EPOCH_MS_MIN:
        return round(value * 1000)
    if value < _EPOCH_US_MIN:
        return int(value)
    if value < _EPOCH_NS_MIN:
        return int(value // 1000)
    return int(value // 1_000_000)


def _local_midnight(now_ms: int, tz: dt.tzinfo | None, days_back: int) -> int:
    now = dt.datetime.fromtimestamp(now_ms / 1000, tz=tz or _local_tz())
    day = (now - dt.timedelta(days=days_back)).date()
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=now.tzinfo)
    return (midnight - _EPOCH_UTC) // dt.timedelta(milliseconds=1)


def _local_tz() -> dt.tzinfo:
    tz = dt.datetime.now().astimezone().tzinfo
    assert tz is not None
    return tz


_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_RELATIVE = re.compile(r"([+-])\s*(.+)")
_EPOCH = re.compile(r"\d+(\.\d+)?")


def parse_time(text: str, *, now_ms: int, tz: dt.tzinfo | None = None) -> int:
    """A point in time (the TIME of the module docstring) -> epoch milliseconds.

    ``tz`` is the zone for ISO values without an offset and for today/yesterday; None means
    the machine's local zone.
    """
    s = text.strip()
    if not s:
        raise TimeSpecError("empty time")
    low = s.lower()
    if low == "now":
        return now_ms
    if low == "today":
        return _local_midnight(now_ms, tz, 0)
    if low == "yesterday":
        return _local_midnight(now_ms, tz, 1)
    if low.endswith(" ago"):
        return now_ms - parse_duration_ms(low[: -len(" ago")])
    m = _RELATIVE.fullmatch(s)
    if m:
        sign = -1 if m.group(1) == "-" else 1
        return now_ms + sign * parse_duration_ms(m.group(2))
    if _EPOCH.fullmatch(s):
        return epoch_to_ms(float(s) if "." in s else int(s))
    iso = s[:-1] + "+00:00" if s[-1] in "zZ" else s
    try:
        parsed = dt.datetime.fromisoformat(iso)
    except ValueError:
        raise TimeSpecError(
            f"bad time {text!r}: expected ISO-8601 (2024-05-01T12:00), epoch seconds or "
            "milliseconds, or a relative time (-15m, -3d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz or _local_tz())
    return (parsed - _EPOCH_UTC) // dt.timedelta(milliseconds=1)


def _at_time(text: str, option: str, now_ms: int, tz: dt.tzinfo | None) -> Timestamp:
    body = text[1:]
    if not body:
        raise TimeSpecError(f"{option} @ needs a time after it, e.g. {option} @-15m")
    return Timestamp(parse_time(body, now_ms=now_ms, tz=tz))


_INT = re.compile(r"[+-]?\d+")


def parse_start(text: str, *, now_ms: int, tz: dt.tzinfo | None = None) -> StartSpec:
    """Parse a ``--from`` value (see the module docstring)."""
    s = text.strip()
    low = s.lower()
    if low in ("beginning", "earliest", "start", "oldest"):
        return Beginning()
    if low in ("end", "latest", "newest"):
        return End()
    if s.startswith("@"):
        return _at_time(s, "--from", now_ms, tz)
    if _INT.fullmatch(s):
        n = int(s)
        if s[0] == "-":
            return FromEnd(-n)
        if s[0] == "+":
            return FromBeginning(n)
        return Offset(n)
    raise TimeSpecError(_hint(text, "--from", "beginning, end, N, -N, +N or @TIME"))


def parse_stop(text: str, *, now_ms: int, tz: dt.tzinfo | None = None) -> StopSpec:
    """Parse an ``--until`` value (see the module docstring)."""
    s = text.strip()
    low = s.lower()
    if low in ("end", "latest", "now-end"):
        return End()
    if s.startswith("@"):
        return _at_time(s, "--until", now_ms, tz)
    if _INT.fullmatch(s):
        if s[0] == "-":
            raise TimeSpecError(f"--until {text!r}: an offset cannot be negative")
        if s[0] == "+":
            return RecordCount(int(s))
        return Offset(int(s))
    raise TimeSpecError(_hint(text, "--until", "end, N, +N or @TIME"))


def check_order(start: object, stop: object) -> None:
    """Raise TimeSpecError when ``--until`` lies before ``--from`` and both are the same kind
    (two offsets, or two times), so the order can be judged without reading the log."""
    if isinstance(start, Offset) and isinstance(stop, Offset) and stop.offset < start.offset:
        raise TimeSpecError(
            f"--until {stop.offset} is before --from {start.offset}: the range would be empty "
            "(--until is where reading stops)"
        )
    if isinstance(start, Timestamp) and isinstance(stop, Timestamp) and stop.ms < start.ms:
        raise TimeSpecError(
            f"--until @{_iso(stop.ms)} is before --from @{_iso(start.ms)}: the range would be "
            "empty (--until is where reading stops)"
        )


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def parse_since(text: str, *, now_ms: int, tz: dt.tzinfo | None = None) -> Timestamp:
    """``--since 10m`` (a duration back from now) or ``--since 2024-05-01`` (a TIME)."""
    s = text.strip().lstrip("@")
    try:
        return Timestamp(now_ms - parse_duration_ms(s.lstrip("-")))
    except TimeSpecError:
        pass
    try:
        return Timestamp(parse_time(s, now_ms=now_ms, tz=tz))
    except TimeSpecError:
        raise TimeSpecError(
            f"bad --since {text!r}: expected a duration (10m, 3d, 1h30m) or a time "
            "(2024-05-01T12:00)"
        ) from None


def _hint(text: str, option: str, expected: str) -> str:
    msg = f"bad {option} {text!r}: expected {expected}"
    try:
        parse_time(text, now_ms=0)
    except TimeSpecError:
        return msg
    return f"{msg} (did you mean {option} @{text.strip()}?)"
