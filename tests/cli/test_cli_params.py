"""Small value parsers: partition lists, key=value, rates, samples, output mode detection."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.cli import params


@pytest.mark.parametrize(
    ("text", "parts"),
    [("0", [0]), ("0,3-5", [0, 3, 4, 5]), ("5,1,1", [1, 5]), (" 2 - 3 ", [2, 3]), ("7-7", [7])],
)
def test_partition_lists(text: str, parts: list[int]) -> None:
    assert params.parse_partitions(text) == parts


@pytest.mark.parametrize("text", ["", "a", "1,", "3-1", "-1", "1-2-3", "0-999999999"])
def test_bad_partition_lists(text: str) -> None:
    with pytest.raises(ValueError):
        params.parse_partitions(text)


@given(st.sets(st.integers(min_value=0, max_value=500), min_size=1))
def test_partition_list_round_trips(parts: set[int]) -> None:
    assert params.parse_partitions(",".join(map(str, parts))) == sorted(parts)


def test_key_value() -> None:
    assert params.parse_key_value("a=b=c") == ("a", "b=c")
    assert params.parse_key_value("a=") == ("a", "")
    for bad in ("a", "=b", ""):
        with pytest.raises(ValueError):
            params.parse_key_value(bad)


@pytest.mark.parametrize(
    ("text", "per_s"), [("50/s", 50.0), ("50", 50.0), ("600/m", 10.0), ("3600/h", 1.0)]
)
def test_rates(text: str, per_s: float) -> None:
    assert params.parse_rate(text) == per_s


@pytest.mark.parametrize("text", ["0/s", "-1/s", "x/s", "5/fortnight"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(ValueError):
        params.parse_rate(text)


@pytest.mark.parametrize(
    ("text", "n"), [("1/100", 100), ("100", 100), ("1%", 100), ("0.01", 100), ("1/1", 1)]
)
def test_samples(text: str, n: int) -> None:
    assert params.parse_sample(text) == n


@pytest.mark.parametrize("text", ["2/100", "0", "1/0", "x", "0%"])
def test_bad_samples(text: str) -> None:
    with pytest.raises(ValueError):
        params.parse_sample(text)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_output_mode_follows_the_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    assert params.default_output(_Tty()) == "table"
    assert params.default_output(io.StringIO()) == "plain"
    assert params.use_colour(_Tty()) is True
    assert params.use_colour(io.StringIO()) is False
    assert params.use_colour(io.StringIO(), requested=True) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert params.use_colour(_Tty()) is False
