"""Prefaulting: write-fault the pages just ahead of an active segment's append cursor in a
background thread, so the append itself copies into pages that are already mapped.

Why: the first write to each page of a freshly ``posix_fallocate``d, shared, file-backed map
takes a page fault (page-cache allocation, zeroing, ``page_mkwrite`` and the filesystem's
bookkeeping for the unwritten extent). Measured on ext4 (decision 0005 in docs/decisions/),
that is ~3/4 of the cost of copying a 124 KB batch into the map. ``madvise(MADV_POPULATE_WRITE)``
(Linux >= 5.14) takes the same faults without writing anything; called through ctypes it
releases the GIL, so a background thread absorbs the cost while the broker serves requests.

Safety:

* ``MADV_POPULATE_WRITE`` never changes the bytes of a page: a populated page of the
  preallocated tail is zero-filled, exactly as an unpopulated one reads. Crash recovery's
  rule (an all-zero header is the end of the log) is unaffected. The populated pages are
  dirty, so the next msync also writes those zeros (once; at most the prefault window).
* The thread works only on ``[populated, populated + step)`` of a segment's map, under the
  active file's map lock; :class:`~logstream.storage.active_file.ActiveFile` takes the
  same lock before it unmaps, so a map is never unmapped under a running ``madvise``.
* The window ahead of the cursor grows with what the segment has taken since it was
  activated (:data:`MIN_AHEAD` to :data:`MAX_AHEAD`), so a partition that sees one small
  append populates a few pages, not megabytes; idle partitions cost nothing.
* Where the call is unavailable (not Linux, kernel < 5.14: ``EINVAL``), prefaulting turns
  itself off and appends fault as before. Nothing else depends on it.

One daemon thread per process (:func:`shared`), started on first use; it is recreated in a
forked child.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import mmap
import os
import threading
from typing import Protocol

from logstream.storage import libc

log = logging.getLogger("logstream.storage")

MADV_POPULATE_WRITE = 23  # <linux/mman.h>, Linux >= 5.14
PAGE = mmap.PAGESIZE
STEP = 2 << 20  # one madvise call (~0.5 ms on ext4): what a seal may have to wait for
MIN_AHEAD = 256 << 10
MAX_AHEAD = 8 << 20


class Prefaultable(Protocol):
    def prefault_step(self, madvise: Madvise) -> bool: ...


class Madvise(Protocol):
    def __call__(self, addr: int, length: int) -> int: ...


def _load_madvise() -> Madvise | None:
    fn = libc.function("madvise", [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int])
    if fn is None:
        return None

    def madvise(addr: int, length: int) -> int:
        """0 on success, else the errno (ctypes.CDLL releases the GIL for the call)."""
        if fn(addr, length, MADV_POPULATE_WRITE) == 0:
            return 0
        return libc.last_errno()

    return madvise


def page_up(n: int) -> int:
    """``n`` rounded up to a whole page (madvise wants page-aligned addresses)."""
    return -(-n // PAGE) * PAGE


def window(size: int, activated_size: int) -> int:
    """How far ahead of the cursor to keep pages populated."""
    return min(MAX_AHEAD, max(MIN_AHEAD, size - activated_size))


class Prefaulter:
    """A queue of segments that want pages populated and one thread serving it."""

    def __init__(self, madvise: Madvise | None = None) -> None:
        """``madvise``: the call that populates pages (errno or 0); by default libc's with
        MADV_POPULATE_WRITE. Tests pass one that fails like an old kernel."""
        self._madvise = madvise if madvise is not None else _load_madvise()
        self.enabled = self._madvise is not None
        self._cv = threading.Condition()
        self._queue: collections.deque[Prefaultable] = collections.deque()
        self._thread: threading.Thread | None = None
        self.calls = 0  # madvise calls made (tests, benchmarks)

    def request(self, seg: Prefaultable) -> None:
        """Ask for ``seg.prefault_step`` to be called until it returns False."""
        if not self.enabled:
            return
        with self._cv:
            self._queue.append(seg)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="logstream-prefault", daemon=True
                )
                self._thread.start()
            self._cv.notify()

    def idle(self, timeout: float = 5.0) -> bool:
        """Wait until the queue is empty (tests). True if it emptied in time."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._queue, timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.notify_all()  # wakes idle()
                    self._cv.wait()
                seg = self._queue[0]
            more = False
            try:
                more = seg.prefault_step(self._call)
            except Exception:  # never let the thread die; the append path faults instead
                log.exception("prefault of %r failed", seg)
            with self._cv:
                if not more or not self.enabled:
                    self._queue.popleft()
                else:
                    self._queue.rotate(-1)  # round robin between busy segments

    def _call(self, addr: int, length: int) -> int:
        assert self._madvise is not None
        err = self._madvise(addr, length)
        self.calls += 1
        if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
            # Kernel without MADV_POPULATE_WRITE (or a sandbox forbidding it): stop trying.
            self.enabled = False
            log.info("prefaulting disabled: madvise(MADV_POPULATE_WRITE): %s", os.strerror(err))
        return err


_shared: Prefaulter | None = None
_shared_lock = threading.Lock()


def shared() -> Prefaulter:
    """The process-wide prefaulter (its thread starts on the first request)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = Prefaulter()
    return _shared


def _reset_after_fork() -> None:
    global _shared, _shared_lock
    _shared = None
    _shared_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
