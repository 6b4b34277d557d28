"""The reserved schedule headers: writing them, finding them in a batch, bad values."""

from __future__ import annotations

import pytest

from logstream.codec import (
    DELIVER_AT,
    EXPIRES_AT,
    MAX_DELAY_MS,
    ZSTD,
    batch_schedule,
    encode_batch,
    encode_headers,
    expiry_of,
    parse_time,
    schedule_headers,
)
from logstream.errors import InvalidScheduleError

NOW = 1_800_000_000_000


def test_delay_and_ttl_become_absolute_decimal_headers_after_the_callers_own() -> None:
    hs = schedule_headers({"trace": b"t1"}, delay_ms=1_500, ttl_ms=60_000, now_ms=NOW)
    assert hs == [
        ("trace", b"t1"),
        (DELIVER_AT, str(NOW + 1_500).encode()),
        (EXPIRES_AT, str(NOW + 60_000).encode()),
    ]
    assert schedule_headers(None, deliver_at_ms=NOW + 5, now_ms=NOW) == [
        (DELIVER_AT, str(NOW + 5).encode())
    ]


@pytest.mark.parametrize(
    "kw",
    [
        {"delay_ms": -1},
        {"delay_ms": MAX_DELAY_MS + 1},
        {"deliver_at_ms": NOW + MAX_DELAY_MS + 1},
        {"deliver_at_ms": -5},
        {"delay_ms": 1, "deliver_at_ms": NOW},
        {"ttl_ms": 0},
        {"ttl_ms": True},
        {"delay_ms": "5"},
    ],
)
def test_out_of_range_schedules_raise_a_value_error(kw: dict) -> None:
    with pytest.raises(InvalidScheduleError) as info:
        schedule_headers(None, now_ms=NOW, **kw)
    assert isinstance(info.value, ValueError)


def test_reserved_names_cannot_be_passed_as_plain_headers_with_a_schedule() -> None:
    with pytest.raises(InvalidScheduleError):
        schedule_headers([(DELIVER_AT, b"1")], ttl_ms=5, now_ms=NOW)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"123", 123),
        (b"", None),
        (b"-1", None),
        (b" 1", None),
        (b"1" * 20, None),
        (b"\xd9\xa1", None),
    ],
)
def test_only_plain_ascii_digits_parse(raw: bytes, want: int | None) -> None:
    assert parse_time(raw) == want


def batch(headers: list[list[tuple[str, bytes]]], **kw: object) -> bytes:
    blobs = [encode_headers(h) if h else b"" for h in headers]
    return encode_batch([b"v"] * len(headers), headers=blobs, timestamps=NOW, **kw)  # type: ignore[arg-type]


def test_batches_without_reserved_headers_yield_no_schedule() -> None:
    plain = encode_batch([b"a", b"b"], timestamps=NOW)
    assert batch_schedule(plain, 0, 0, 2) is None
    assert batch_schedule(batch([[("trace", b"x")], []]), 0, 0, 2) is None


def test_other_logstream_headers_do_not_open_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests of request/reply carry logstream-reply-to: a queue group admitting them must
    not decode the batch looking for a schedule."""
    from logstream.codec import schedule

    def no_decode(*_a: object, **_k: object) -> None:
        raise AssertionError("decoded a batch that has no schedule header")

    monkeypatch.setattr(schedule, "decode_batch", no_decode)
    req = batch(
        [[("logstream-reply-to", b"_inbox." + b"0" * 32), ("logstream-correlation-id", b"c")]]
    )
    assert batch_schedule(req, 0, 0, 1) is None


@pytest.mark.parametrize("codec", [0, ZSTD])
def test_schedule_arrays_for_a_slice_of_a_batch(codec: int) -> None:
    buf = batch(
        [
            [(DELIVER_AT, str(NOW + 10).encode())],
            [],
            [("x", b"1"), (EXPIRES_AT, str(NOW + 20).encode())],
            [(DELIVER_AT, b"soon"), (EXPIRES_AT, str(NOW + MAX_DELAY_MS * 2).encode())],
            [(DELIVER_AT, str(NOW + MAX_DELAY_MS + 1).encode())],
        ],
        compression_type=codec,
    )
    s = batch_schedule(buf, 0, 1, 5)
    assert s is not None
    assert s.deliver_at_ms.tolist() == [0, 0, 0, 0]  # "soon" and the too-far one ignored
    assert s.expires_at_ms.tolist() == [0, NOW + 20, NOW + MAX_DELAY_MS * 2, 0]
    assert s.invalid == 2


def test_expiry_of_a_records_headers() -> None:
    assert expiry_of(((EXPIRES_AT, b"42"),)) == 42
    assert expiry_of((("a", b"b"),)) == 0
    assert expiry_of(((EXPIRES_AT, b"x"),)) == 0
