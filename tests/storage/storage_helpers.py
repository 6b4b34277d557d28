"""Helpers shared by the storage tests (a module, not conftest: ``conftest`` is ambiguous
when tests/storage and tests/broker are collected in one run)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from logstream.codec import encode_batch


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real small filesystem (tmpfs of ``size``, e.g. "2m") at ``where``, to fill up on
    purpose. Needs root; the calling test is skipped, with the reason, where it can't be made."""
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


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
