"""The file operations that can fail because the disk misbehaves: one seam for all of them.

Storage never calls ``posix_fallocate``, ``write`` of a metadata file, ``ftruncate``,
``msync``, ``fsync`` or ``syncfs`` directly: it goes through the :class:`FileOps` installed
in ``files.py`` (``files.use_file_ops``). A test subclasses :class:`FileOps` to make one of
them fail (a full disk, a lost writeback) or to count them, with no monkeypatching of module
internals. Each method raises ``OSError`` as the OS call would; ``files.storage_errors``
turns it into ``KafkaStorageError`` once, at the caller.

``msync``, ``syncfs`` (and ``madvise`` in prefault.py) go through libc (``libc.py``):
``ctypes.CDLL`` releases the GIL for the call, while CPython's ``mmap.flush`` keeps it for the
whole msync (3-15 ms), which would freeze every other thread of a broker once per flush.

Concurrency: a FileOps is stateless and called from any thread.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
from collections.abc import Callable

from logstream.storage import libc

_MS_SYNC = 4  # Linux's value; other systems use mmap.flush below


@functools.cache
def _msync_fn() -> Callable[..., int] | None:
    return libc.function("msync", [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int])


@functools.cache
def _syncfs_fn() -> Callable[..., int] | None:
    return libc.function("syncfs", [ctypes.c_int])


def _raise_errno(what: str) -> None:
    err = libc.last_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


class FileOps:
    """The real operations. Subclass and override one method to inject a fault."""

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        """Reserve disk blocks for ``[offset, offset + length)`` (``posix_fallocate``)."""
        os.posix_fallocate(fd, offset, length)

    def write(self, fd: int, data: memoryview) -> int:
        """Write to a metadata or index file being created; returns the bytes written."""
        return os.write(fd, data)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def msync(self, mm: mmap.mmap) -> None:
        """Write a map's dirty pages to disk (``msync(MS_SYNC)``, without the GIL)."""
        fn = _msync_fn()
        if fn is None or mm.closed:
            mm.flush()
            return
        try:
            addr = libc.map_address(mm)
        except TypeError:  # a read-only map: nothing of ours to write back
            mm.flush()
            return
        if fn(addr, len(mm), _MS_SYNC) != 0:
            _raise_errno("msync")

    def has_syncfs(self) -> bool:
        """Whether :meth:`syncfs` exists here (else callers sync file by file)."""
        return _syncfs_fn() is not None

    def syncfs(self, fd: int) -> None:
        """Make the whole filesystem holding ``fd`` durable."""
        fn = _syncfs_fn()
        if fn is None:
            raise OSError(0, "syncfs is not available")
        if fn(fd) != 0:
            _raise_errno("syncfs")
