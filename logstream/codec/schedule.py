"""The two reserved record headers that schedule a record: when it is due, when it expires.

::

    logstream-deliver-at   absolute due time: ms since the Unix epoch, ASCII decimal digits
    logstream-expires-at   absolute expiry time: ms since the Unix epoch, ASCII decimal digits

Example value: ``b"1796550000000"``. Plain text so that a producer in any language can
write them; absolute times so that a record means the same thing whenever it is read. The
producer turns ``delay_ms`` / ``ttl_ms`` into these (:func:`schedule_headers`); queue groups
read them when they take records into a window (:func:`batch_schedule`), and a plain
consumer with ``skip_expired`` reads the expiry (:func:`expiry_of`). Everyone else sees two
ordinary headers.

A value is **valid** when it is 1 to 19 ASCII digits (no sign, no spaces) and, for a due
time, at most :data:`MAX_DELAY_MS` after the record's own timestamp. Readers treat an
invalid value as absent (deliver now, never expire) and count it: the record is stored
already, and refusing it later would lose it.

Cost: a batch whose header says ``headers_length == 0`` is never opened; for one with
headers, its header run (the batch's last bytes, when uncompressed) is searched for the
two names, and only a batch that has one is decoded and its records' headers parsed. (Not
for the common prefix ``logstream-``: every request of request/reply carries
``logstream-reply-to``, and would be decoded for nothing.) Pure functions, thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from logstream.codec.compression import NONE
from logstream.codec.decode import decode_batch
from logstream.codec.header import Buffer, read_header
from logstream.errors import InvalidScheduleError
from logstream.types import Headers

DELIVER_AT: Final = "logstream-deliver-at"
EXPIRES_AT: Final = "logstream-expires-at"
_NAMES: Final = (DELIVER_AT.encode(), EXPIRES_AT.encode())
MAX_DELAY_MS: Final = 7 * 24 * 3600 * 1000
"""The longest delay a record may carry: seven days after its timestamp."""
_MAX_DIGITS: Final = 19

HeaderInput = Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None


def schedule_headers(
    headers: HeaderInput,
    *,
    delay_ms: int | None = None,
    deliver_at_ms: int | None = None,
    ttl_ms: int | None = None,
    now_ms: int | None = None,
) -> list[tuple[str, bytes]]:
    """``headers`` plus the reserved ones for a delay (or an absolute due time) and a TTL.

    The TTL counts from ``now_ms`` (the send time), not from the due time: a record delayed
    by a minute with a TTL of 30 s expires before it is due. Raises
    :class:`InvalidScheduleError` for values out of range."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if delay_ms is not None and deliver_at_ms is not None:
        raise InvalidScheduleError("give delay_ms or deliver_at_ms, not both")
    if delay_ms is not None:
        _check_int("delay_ms", delay_ms)
        if not 0 <= delay_ms <= MAX_DELAY_MS:
            raise InvalidScheduleError(
                f"delay_ms must be between 0 and {MAX_DELAY_MS} (7 days), got {delay_ms}"
            )
        deliver_at_ms = now + delay_ms
    elif deliver_at_ms is not None:
        _check_int("deliver_at_ms", deliver_at_ms)
        if deliver_at_ms < 0 or deliver_at_ms > now + MAX_DELAY_MS:
            raise InvalidScheduleError(
                f"deliver_at_ms must be at most 7 days from now (epoch ms), got {deliver_at_ms}"
            )
    if ttl_ms is not None:
        _check_int("ttl_ms", ttl_ms)
        if ttl_ms <= 0 or ttl_ms > 10**15:
            raise InvalidScheduleError(f"ttl_ms must be > 0, got {ttl_ms}")
    out = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    if any(name in (DELIVER_AT, EXPIRES_AT) for name, _ in out):
        raise InvalidScheduleError(
            f"set {DELIVER_AT} / {EXPIRES_AT} through delay_ms / ttl_ms, not as headers"
        )
    if deliver_at_ms is not None:
        out.append((DELIVER_AT, str(deliver_at_ms).encode()))
    if ttl_ms is not None:
        out.append((EXPIRES_AT, str(now + ttl_ms).encode()))
    return out


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidScheduleError(f"{name} must be an integer, got {value!r}")


def parse_time(value: bytes | None) -> int | None:
    """The epoch-ms value of a reserved header, or None if it is not 1-19 ASCII digits."""
    if not value or len(value) > _MAX_DIGITS or not value.isdigit() or not value.isascii():
        return None
    return int(value)


@dataclass(frozen=True)
class Schedule:
    """Per-record due and expiry times of a run of records (0 = none), and how many
    reserved values were unreadable (ignored)."""

    deliver_at_ms: np.ndarray  # int64
    expires_at_ms: np.ndarray  # int64
    invalid: int


def batch_schedule(buf: Buffer, pos: int, first: int, stop: int) -> Schedule | None:
    """Due and expiry times of records ``[first, stop)`` (indexes within the batch at
    ``pos``), or None when none of them carries a reserved header (the common case, found
    from the batch header, or by a substring search per name of the batch's header run: the
    last ``headers_length`` bytes of an uncompressed batch). The batch was checked on
    append."""
    header = read_header(buf, pos)
    if header.headers_length == 0:
        return None
    if header.compression == NONE:
        end = pos + header.batch_length
        if not _has_name(bytes(memoryview(buf)[end - header.headers_length : end])):
            return None
    batch = decode_batch(buf, pos, verify=False)
    if not _has_name(bytes(batch.headers_blob)):
        return None
    return _schedule(
        [batch.record_headers(i) for i in range(first, stop)],
        batch.timestamps[first:stop],
    )


def _has_name(blob: bytes) -> bool:
    return _NAMES[0] in blob or _NAMES[1] in blob


def _schedule(headers: Sequence[Headers], stamps: np.ndarray) -> Schedule | None:
    n = len(headers)
    at = np.zeros(n, np.int64)
    exp = np.zeros(n, np.int64)
    invalid = 0
    found = False
    for i, hs in enumerate(headers):
        for name, value in hs:
            if name == DELIVER_AT:
                found = True
                t = parse_time(value)
                if t is None or t > int(stamps[i]) + MAX_DELAY_MS:
                    invalid += 1
                else:
                    at[i] = t
            elif name == EXPIRES_AT:
                found = True
                t = parse_time(value)
                if t is None:
                    invalid += 1
                else:
                    exp[i] = t
    return Schedule(at, exp, invalid) if found else None


def expiry_of(headers: Headers) -> int:
    """The expiry time a record's headers carry (epoch ms), 0 for none or unreadable."""
    for name, value in headers:
        if name == EXPIRES_AT:
            return parse_time(value) or 0
    return 0
