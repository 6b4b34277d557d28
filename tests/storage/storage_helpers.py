"""Helpers shared by the storage tests (a module, not conftest: ``conftest`` is ambiguous
when tests/storage and tests/broker are collected in one run)."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from logstream.codec import encode_batch
from logstream.storage.io import FileOps


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


class ScriptedFileOps(FileOps):
    """Storage's file operations (``storage/io.py``), recorded per name, and failing with
    the OSError put in :attr:`fail` under that name (fault injection). ``syncfs`` also
    stands in where the C library lacks it."""

    def __init__(self) -> None:
        self.calls: dict[str, list[object]] = defaultdict(list)
        self.fail: dict[str, OSError] = {}

    def _record(self, name: str, arg: object) -> None:
        self.calls[name].append(arg)
        exc = self.fail.get(name)
        if exc is not None:
            raise exc

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        self._record("fallocate", (offset, length))
        super().fallocate(fd, offset, length)

    def write(self, fd: int, data: memoryview) -> int:
        self._record("write", fd)
        return super().write(fd, data)

    def ftruncate(self, fd: int, length: int) -> None:
        self._record("ftruncate", length)
        super().ftruncate(fd, length)

    def fsync(self, fd: int) -> None:
        self._record("fsync", fd)
        super().fsync(fd)

    def msync(self, mm: mmap.mmap) -> None:
        self._record("msync", mm)
        super().msync(mm)

    def has_syncfs(self) -> bool:
        return True

    def syncfs(self, fd: int) -> None:
        self._record("syncfs", fd)
        os.sync()


def eio() -> OSError:
    return OSError(errno.EIO, "Input/output error")
