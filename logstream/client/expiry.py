"""Skipping expired records on plain reads (``Consumer(skip_expired=True)``).

A record expires at the time its ``logstream-expires-at`` header names
(:mod:`logstream.codec.schedule`). The check runs per fetched run of records: a run whose
batch has no headers at all (``RecordRun.headers is None``) passes untouched; otherwise each
record's decoded headers are looked at once and the run is cut around the expired ones
(runs hold consecutive offsets). Skipped records still move the position: they are read
and passed over, as a queue group would. Pure functions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from logstream.client.chunks import Chunk, RecordList, RecordRun
from logstream.codec import expiry_of
from logstream.types import Record


def unexpired(run: RecordRun, now_ms: int) -> Iterator[RecordRun]:
    """``run`` without its records expired at ``now_ms``, as one or more runs."""
    headers = run.headers
    if headers is None:
        yield run
        return
    dead = [i for i, h in enumerate(headers) if h and 0 < expiry_of(h) <= now_ms]
    if not dead:
        yield run
        return
    stamps = run.timestamps
    lo = 0
    for cut in [*dead, len(headers)]:
        if cut > lo:
            yield RecordRun(
                run.topic,
                run.partition,
                run.first_offset + lo,
                stamps if isinstance(stamps, int) else stamps[lo:cut],
                None if run.keys is None else run.keys[lo:cut],
                run.values[lo:cut],
                headers[lo:cut],
            )
        lo = cut + 1


def is_expired(record: Record, now_ms: int) -> bool:
    """True if the record's expiry header names a time at or before ``now_ms``."""
    expires = expiry_of(record.headers)
    return 0 < expires <= now_ms


def take_unexpired(out: RecordList, chunk: Chunk, limit: int) -> None:
    """Like :meth:`RecordList.take_from`, leaving out expired records."""
    now_ms = int(time.time() * 1000)
    for run in unexpired(chunk.take_run(limit), now_ms):
        out.add_run(run)
