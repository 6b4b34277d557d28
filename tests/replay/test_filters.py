"""Match filters, sampling and rate limiting over records, with a manual clock."""

from __future__ import annotations

import pytest

from logstream.replay.filters import Matcher, RateLimiter, RecordFilter, Sampler
from logstream.testing.clock import ManualClock
from logstream.types import Record


def rec(i: int, key: bytes | None = None, value: bytes | None = b"", headers=()) -> Record:  # type: ignore[no-untyped-def]
    return Record("t", 0, i, 0, key, value, headers)


def test_key_filter_matches_exactly() -> None:
    m = Matcher(keys=["a", "b"])
    assert m(rec(0, key=b"a")) and m(rec(0, key=b"b"))
    assert not m(rec(0, key=b"ab")) and not m(rec(0, key=None))


def test_grep_searches_the_value_and_survives_binary() -> None:
    m = Matcher(grep=r"err(or)?\b")
    assert m(rec(0, value=b"an error here"))
    assert not m(rec(0, value=b"all fine"))
    assert not m(rec(0, value=None))
    assert m(rec(0, value=b"\xff\xfe err"))
    assert Matcher(grep="fine", invert_grep=True)(rec(0, value=b"error"))


def test_bad_regex_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bad --grep"):
        Matcher(grep="(unclosed")


def test_header_filter_needs_every_pair() -> None:
    m = Matcher(headers=[("env", "prod"), ("trace", None)])
    assert m(rec(0, headers=(("env", b"prod"), ("trace", b"x"))))
    assert not m(rec(0, headers=(("env", b"prod"),)))
    assert not m(rec(0, headers=(("env", b"dev"), ("trace", b"x"))))


def test_sampler_keeps_one_in_n_deterministically() -> None:
    s = Sampler(10)
    kept = [i for i in range(100) if s(rec(i))]
    assert kept == list(range(0, 100, 10))


def test_rate_limiter_drops_over_the_rate() -> None:
    clock = ManualClock()
    limit = RateLimiter(5, clock)
    assert sum(limit(rec(i)) for i in range(20)) == 5  # one second's burst
    clock.advance(1000)
    assert sum(limit(rec(i)) for i in range(20)) == 5
    clock.advance(200)
    assert sum(limit(rec(i)) for i in range(20)) == 1


def test_filter_chain_counts_why_records_were_dropped() -> None:
    clock = ManualClock()
    f = RecordFilter(matcher=Matcher(grep="x"), sampler=Sampler(2), limiter=RateLimiter(2, clock))
    out = [f(rec(i, value=b"x" if i % 2 == 0 else b"y")) for i in range(20)]
    assert sum(out) == 2
    assert f.stats.seen == 20 and f.stats.matched == 10
    assert f.stats.sampled_out == 5 and f.stats.rate_dropped == 3
