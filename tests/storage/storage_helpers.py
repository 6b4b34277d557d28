"""Helpers shared by the storage tests (a module, not conftest: ``conftest`` is ambiguous
when tests/storage and tests/broker are collected in one run)."""

from __future__ import annotations

from logstream.codec import encode_batch


def make_batch(
    count: int = 1,
    *,
    ts: int = 1_700_000_000_000,
    value_size: int = 10,
    tag: int = 0,
    producer_id: int = -1,
    epoch: int = -1,
    sequence: int = -1,
) -> bytes:
    """A batch of ``count`` records, timestamps ts, ts+1, ...; values carry ``tag``."""
    values = [(b"%d:%d:" % (tag, i)).ljust(value_size, b"x") for i in range(count)]
    return encode_batch(
        values,
        timestamps=[ts + i for i in range(count)],
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
    )
