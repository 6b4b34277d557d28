"""The --from/--until/--since/@TIME grammar, with a pinned "now"."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.replay import timespec as ts
from logstream.replay.timespec import (
    Beginning,
    End,
    FromBeginning,
    FromEnd,
    Offset,
    RecordCount,
    TimeSpecError,
    Timestamp,
)
from logstream.testing.clock import ManualClock

NOW = ManualClock(1_714_557_600_000).now_ms()  # 2024-05-01T10:00:00Z
UTC = dt.UTC


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("15m", 15 * 60_000),
        ("3d", 3 * 86_400_000),
        ("1h30m", 90 * 60_000),
        ("250ms", 250),
        ("1.5h", 5_400_000),
        ("2w", 14 * 86_400_000),
        ("10s", 10_000),
        ("0s", 0),
    ],
)
def test_durations_parse_with_units(text: str, ms: int) -> None:
    assert ts.parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "15", "15x", "m15", "1h 30m", "-5m", "1h30"])
def test_bad_durations_are_rejected_with_a_hint(text: str) -> None:
    with pytest.raises(TimeSpecError):
        ts.parse_duration_ms(text)


def test_duration_without_unit_suggests_one() -> None:
    with pytest.raises(TimeSpecError, match="needs a unit"):
        ts.parse_duration_ms("15")


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("now", NOW),
        ("-15m", NOW - 15 * 60_000),
        ("-3d", NOW - 3 * 86_400_000),
        ("+10s", NOW + 10_000),
        ("15m ago", NOW - 15 * 60_000),
        ("1714557600", 1_714_557_600_000),
        ("1714557600.5", 1_714_557_600_500),
        ("1714557600123", 1_714_557_600_123),
        ("1714557600123456", 1_714_557_600_123),
        ("1714557600123456789", 1_714_557_600_123),
        ("2024-05-01T10:00:00Z", 1_714_557_600_000),
        ("2024-05-01T12:00:00+02:00", 1_714_557_600_000),
        ("2024-05-01 10:00:00.250Z", 1_714_557_600_250),
        ("2024-05-01T10:00", 1_714_557_600_000),  # naive: in the given tz (UTC here)
        ("2024-05-01", 1_714_521_600_000),
        ("today", 1_714_521_600_000),
        ("yesterday", 1_714_521_600_000 - 86_400_000),
    ],
)
def test_times_parse_to_epoch_ms(text: str, ms: int) -> None:
    assert ts.parse_time(text, now_ms=NOW, tz=UTC) == ms


def test_naive_iso_uses_the_given_zone() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert ts.parse_time("2024-05-01T12:00", now_ms=NOW, tz=plus2) == 1_714_557_600_000


@pytest.mark.parametrize("text", ["", "yesteryear", "2024-13-01", "12:00pm", "@now", "--5m"])
def test_bad_times_raise_one_line_errors(text: str) -> None:
    with pytest.raises(TimeSpecError) as info:
        ts.parse_time(text, now_ms=NOW, tz=UTC)
    assert "\n" not in str(info.value)


@given(st.integers(min_value=0, max_value=10**11 - 1))
def test_epoch_seconds_below_1e11_scale_to_ms(seconds: int) -> None:
    assert ts.epoch_to_ms(seconds) == seconds * 1000


@given(st.integers(min_value=10**11, max_value=10**14 - 1))
def test_epoch_ms_pass_through(ms: int) -> None:
    assert ts.epoch_to_ms(ms) == ms


@given(st.integers(min_value=100_000_000_000, max_value=4_102_444_800_000))  # 1973..2100
def test_every_real_timestamp_is_classified_in_all_units(ms: int) -> None:
    assert ts.epoch_to_ms(ms) == ms
    assert ts.epoch_to_ms(ms * 1000) == ms
    assert ts.epoch_to_ms(ms * 1_000_000) == ms
    assert abs(ts.epoch_to_ms(ms // 1000) - (ms // 1000) * 1000) == 0


@given(
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from(["ms", "s", "m", "h", "d", "w"]),
    st.integers(min_value=0, max_value=2**40),
)
def test_relative_times_are_now_minus_duration(n: int, unit: str, now: int) -> None:
    assert ts.parse_time(f"-{n}{unit}", now_ms=now) == now - ts.parse_duration_ms(f"{n}{unit}")


@given(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1)))
def test_iso_round_trips_through_utc(when: dt.datetime) -> None:
    aware = when.replace(tzinfo=UTC, microsecond=(when.microsecond // 1000) * 1000)
    expected = (aware - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(milliseconds=1)
    assert ts.parse_time(aware.isoformat(), now_ms=NOW) == expected


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("beginning", Beginning()),
        ("earliest", Beginning()),
        ("end", End()),
        ("latest", End()),
        ("42", Offset(42)),
        ("-10", FromEnd(10)),
        ("+10", FromBeginning(10)),
        ("@-15m", Timestamp(NOW - 15 * 60_000)),
        ("@2024-05-01T10:00:00Z", Timestamp(NOW)),
        ("@1714557600", Timestamp(NOW)),
    ],
)
def test_from_grammar(text: str, spec: object) -> None:
    assert ts.parse_start(text, now_ms=NOW, tz=UTC) == spec


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("end", End()),
        ("100", Offset(100)),
        ("+5", RecordCount(5)),
        ("@now", Timestamp(NOW)),
        ("@-1h", Timestamp(NOW - 3_600_000)),
    ],
)
def test_until_grammar(text: str, spec: object) -> None:
    assert ts.parse_stop(text, now_ms=NOW, tz=UTC) == spec


def test_from_a_bare_time_suggests_the_at_sign() -> None:
    with pytest.raises(TimeSpecError, match=r"did you mean --from @2024-05-01"):
        ts.parse_start("2024-05-01", now_ms=NOW)
    with pytest.raises(TimeSpecError, match=r"did you mean --from @-15m"):
        ts.parse_start("-15m", now_ms=NOW)


@pytest.mark.parametrize("text", ["", "@", "begin", "-1.5", "tomorrow"])
def test_bad_from_values(text: str) -> None:
    with pytest.raises(TimeSpecError):
        ts.parse_start(text, now_ms=NOW)


@pytest.mark.parametrize("text", ["-1", "beginning", "@", "x"])
def test_bad_until_values(text: str) -> None:
    with pytest.raises(TimeSpecError):
        ts.parse_stop(text, now_ms=NOW)


def test_since_takes_a_duration_or_a_time() -> None:
    assert ts.parse_since("10m", now_ms=NOW) == Timestamp(NOW - 600_000)
    assert ts.parse_since("-10m", now_ms=NOW) == Timestamp(NOW - 600_000)
    assert ts.parse_since("2024-05-01T10:00Z", now_ms=NOW) == Timestamp(NOW)
    with pytest.raises(TimeSpecError, match="--since"):
        ts.parse_since("soon", now_ms=NOW)
