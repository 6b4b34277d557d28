"""The console's message browser: one partition's records, filtered and paged.

Query (``/api/messages``): ``topic``, ``partition``, ``offset`` (the page's start: newest
first it is exclusive, oldest first inclusive), ``limit``, ``order`` (``newest`` |
``oldest``), and the filters, all optional and combined with AND:

- ``key``: the record key equals this text;
- ``text``: the value contains this text;
- ``header`` (repeatable): ``NAME=VALUE`` (a header NAME with exactly VALUE) or ``NAME``
  (the record has a header NAME);
- ``from_ms`` / ``to_ms``: the record timestamp is in ``[from_ms, to_ms]``. The time index
  (``PartitionLog.record_for_timestamp``, as ListOffsets uses) turns them into an offset
  range first: the first record at or after ``from_ms`` to the first after ``to_ms``; inside
  it each record's own timestamp is compared too, as timestamps need not rise with offsets.

Costs: a request reads at most ``MAX_SCAN_BYTES``; newest first with a filter it searches
the ``FILTER_WINDOW`` records before its offset (inside the time window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from logstream.codec import decode_headers, iter_batches

MAX_LIMIT = 500
MAX_SCAN_BYTES = 8 << 20
FILTER_WINDOW = 20_000
"""A filtered newest-first search looks at this many records before its offset."""


class BadRequest(Exception):
    pass


def text_or_hex(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": data.hex(), "size": len(data)}
    return {"text": text, "size": len(data)}


def _int(q: dict[str, str], name: str, default: int | None) -> int | None:
    raw = q.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise BadRequest(f"{name} is an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Filters:
    key: bytes | None
    text: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]  # (name, value or None for "present")
    from_ms: int | None
    to_ms: int | None

    @classmethod
    def parse(cls, q: dict[str, str], header_args: Sequence[str]) -> Filters:
        headers = []
        for arg in header_args:
            if not arg:
                continue
            name, sep, value = arg.partition("=")
            if not name:
                raise BadRequest(f"a header filter is NAME or NAME=VALUE, got {arg!r}")
            headers.append((name, value.encode() if sep else None))
        from_ms, to_ms = _int(q, "from_ms", None), _int(q, "to_ms", None)
        if from_ms is not None and to_ms is not None and to_ms < from_ms:
            raise BadRequest(f"to_ms ({to_ms}) is before from_ms ({from_ms})")
        return cls(
            q["key"].encode() if q.get("key") else None,
            q["text"].encode() if q.get("text") else None,
            tuple(headers),
            from_ms,
            to_ms,
        )

    @property
    def any(self) -> bool:
        return bool(
            self.key is not None or self.text is not None or self.headers
            or self.from_ms is not None or self.to_ms is not None
        )  # fmt: skip


def _offset_at(plog: Any, timestamp_ms: int) -> int:
    """The first offset whose record is at or after ``timestamp_ms`` (the end if none)."""
    found = plog.record_for_timestamp(timestamp_ms)
    return int(plog.log_end_offset if found is None else found[0])


def search(plog: Any, q: dict[str, str], header_args: Sequence[str]) -> dict[str, Any]:
    """One page of ``plog``'s records for the query ``q`` (see the module docstring)."""
    limit = min(max(_int(q, "limit", 50) or 1, 1), MAX_LIMIT)
    offset = _int(q, "offset", None)
    newest = q.get("order", "newest") != "oldest"
    f = Filters.parse(q, header_args)
    start, end = int(plog.log_start_offset), int(plog.log_end_offset)
    lo = start if f.from_ms is None else max(start, _offset_at(plog, f.from_ms))
    hi = end if f.to_ms is None else min(end, _offset_at(plog, f.to_ms + 1))
    if newest:
        upto = min(hi, offset) if offset is not None else hi
        first = max(lo, upto - (FILTER_WINDOW if f.any else limit))
        found = _scan(plog, first, upto, f)
        page = found[-limit:][::-1]
        more = bool(page) and page[-1]["offset"] > lo
        next_offset = page[-1]["offset"] if more else None
    else:
        first = max(lo, offset if offset is not None else lo)
        found = _scan(plog, first, hi, f, stop_after=limit)
        page = found[:limit]
        next_offset = page[-1]["offset"] + 1 if len(page) == limit else None
    return {
        "log_start_offset": start,
        "log_end_offset": end,
        "window": [lo, hi],
        "records": page,
        "next_offset": next_offset,
    }


def _headers(batch: Any, i: int) -> tuple[tuple[str, bytes], ...]:
    n, s = int(batch.header_lengths[i]), int(batch.header_starts[i])
    return tuple(decode_headers(batch.headers_blob[s : s + n])) if n > 0 else ()


def _matches_headers(have: tuple[tuple[str, bytes], ...], want: Filters) -> bool:
    for name, value in want.headers:
        if not any(k == name and (value is None or v == value) for k, v in have):
            return False
    return True


def _scan(
    plog: Any, first: int, upto: int, f: Filters, stop_after: int | None = None
) -> list[dict[str, Any]]:
    """Records in [first, upto) matching ``f``; at most MAX_SCAN_BYTES read (a newest-first
    search over a long log keeps the newest matches it saw)."""
    out: list[dict[str, Any]] = []
    position, read = first, 0
    while position < upto and read < MAX_SCAN_BYTES:
        data = plog.read(position, 1 << 20)
        if not data:
            break
        read += len(data)
        last = position
        for batch in iter_batches(data, verify=False):
            timestamps = batch.timestamps
            for i in range(len(batch)):
                off = int(batch.offsets[i])
                last = max(last, off + 1)
                if off < position or off >= upto:
                    continue
                ts = int(timestamps[i])
                if (f.from_ms is not None and ts < f.from_ms) or (
                    f.to_ms is not None and ts > f.to_ms
                ):
                    continue
                k, v = batch.key(i), batch.value(i)
                if f.key is not None and k != f.key:
                    continue
                if f.text is not None and f.text not in (v or b""):
                    continue
                headers = _headers(batch, i)
                if f.headers and not _matches_headers(headers, f):
                    continue
                out.append(
                    {
                        "offset": off,
                        "timestamp_ms": ts,
                        "key": text_or_hex(k),
                        "value": text_or_hex(v),
                        "headers": [[name, text_or_hex(value)] for name, value in headers],
                    }
                )
                if stop_after is not None and len(out) >= stop_after:
                    return out
        if last <= position:
            break
        position = last
    return out
