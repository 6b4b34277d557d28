"""ActiveFile: the writable side of the active segment (Redpanda's "appender").

A segment is active exactly while it holds an ActiveFile. The data file is sized to the
segment's capacity and mapped read-write, but disk blocks are reserved (``posix_fallocate``)
only for a prefix that grows ahead of the append cursor (:func:`reserve_goal`: as much again
as the segment holds, 1 MiB .. 16 MiB ahead), so a partition that takes a few KB does not pin
``segment_bytes`` of disk. Nothing ever writes into the map past the reservation (appends grow
it first, the prefault thread stops at it), so a full disk is a named error from
``posix_fallocate``, never a SIGBUS. The rest of the file is zeros (reserved or sparse).

What the ActiveFile owns:

* the write map and its descriptor;
* the reservation policy (:meth:`make_room`);
* the readahead advice: ``MADV_RANDOM`` while the segment is small (a write fault on a new
  partition would otherwise zero-fill ``read_ahead_kb`` of page cache), normal from
  :data:`READAHEAD_FROM` on (the read-around then batches page-cache allocation);
* the prefault window (prefault.py): pages ``[0, populated)`` of the map are populated;
* ``msync`` with a sticky error: Linux reports a writeback error to one msync only, so the
  first failure is kept and every later msync of this file fails too;
* whether the directory entry of a new file is durable yet (fsync'ed by the first flush or
  the seal, not at creation: one directory fsync per new segment on the append path costs a
  journal commit).

Concurrency: not thread-safe; the owning PartitionLog serialises every call with its lock,
except two callers that run without it: the prefault thread (:meth:`prefault_step`) and a
flush (:meth:`flush`). Both take the map lock, which every unmap takes too, so the map
stays alive under an ``madvise`` or ``msync``.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
from pathlib import Path

from logstream.errors import KafkaStorageError
from logstream.storage import files, libc, prefault

log = logging.getLogger("logstream.storage")

RESERVE_MIN = 1 << 20  # disk reserved ahead of an active segment's cursor: at least this
RESERVE_MAX = 16 << 20  # ... and at most this (>= prefault.MAX_AHEAD, so prefault never starves)
READAHEAD_FROM = RESERVE_MIN // 2  # write map: MADV_RANDOM below this size, normal above


def _reserve_what_fits(fd: int, end: int, capacity: int) -> int:
    """The first reservation of a file opened for appends at ``end``: the full lead when
    the disk has it, else nothing yet (a restart on a nearly full disk must not refuse
    every append for want of a lead it does not need: ``make_room`` reserves what each
    append needs and grows the lead as space appears). Returns the reserved end."""
    goal = reserve_goal(end, capacity)
    try:
        files.reserve(fd, end, goal - end)
    except KafkaStorageError as exc:
        log.warning("disk nearly full: no space reserved ahead yet at open (%s)", exc)
        return end
    return goal


def reserve_goal(end: int, capacity: int) -> int:
    """How far an active segment's disk reservation should reach with its cursor at ``end``:
    as much again as the segment holds, between RESERVE_MIN and RESERVE_MAX ahead, page
    aligned, at most ``capacity``. Appends grow it when half of that lead is used up."""
    return min(capacity, prefault.page_up(end + min(max(end, RESERVE_MIN), RESERVE_MAX)))


class ActiveFile:
    """The write map of an active segment's data file; see the module docstring.

    ``end`` is the append cursor (the segment's logical size); the owner moves it with
    :meth:`advance` after each copy into :attr:`map`."""

    def __init__(
        self,
        path: Path,
        fd: int,
        mm: mmap.mmap,
        *,
        end: int,
        capacity: int,
        reserved: int,
        created_ms: int,
        prefaulter: prefault.Prefaulter | None,
        dir_synced: bool,
    ) -> None:
        self.path = path
        self.map = mm
        self.end = end
        self.capacity = capacity
        self.reserved = reserved  # disk blocks reserved for [0, reserved)
        self.created_ms = created_ms
        self.readahead = False  # the map's advice: MADV_NORMAL (True) or MADV_RANDOM
        self.dir_synced = dir_synced  # False until the directory entry was fsync'ed
        self.prefault_pending = False
        self.populated = self.activated_end = end - end % prefault.PAGE
        self._fd: int | None = fd
        self._prefaulter = prefaulter
        # Held by the prefault thread around each madvise, by a flush around its msync
        # (without the partition lock), and by whoever unmaps.
        self._map_lock = threading.Lock()
        self._map_address = libc.map_address(mm)
        self._sync_error: OSError | None = None

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        end: int,
        capacity: int,
        now_ms: int,
        prefaulter: prefault.Prefaulter | None,
        new: bool,
    ) -> ActiveFile:
        """Map ``path`` (created if missing) for appends at ``end``, sized to ``capacity``,
        with the first reservation made. ``new``: the file was just created, so its
        directory entry is not durable yet. Raises KafkaStorageError (nothing left open)."""
        fd = -1
        mm: mmap.mmap | None = None
        with files.storage_errors(f"opening segment {path} for append"):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, files.file_mode())
                if os.fstat(fd).st_size < capacity:
                    files.ftruncate(fd, capacity)  # sparse past the reservation; never written
                reserved = _reserve_what_fits(fd, end, capacity)
                mm = mmap.mmap(fd, capacity, access=mmap.ACCESS_WRITE)
                files.no_readahead(mm)
                active = cls(
                    path,
                    fd,
                    mm,
                    end=end,
                    capacity=capacity,
                    reserved=reserved,
                    created_ms=now_ms,
                    prefaulter=prefaulter,
                    dir_synced=not new,
                )
            except BaseException:
                if mm is not None:
                    mm.close()
                if fd >= 0:
                    os.close(fd)
                raise
        active.want_prefault()
        return active

    def __repr__(self) -> str:
        return f"ActiveFile({self.path.name}, end {self.end}, reserved {self.reserved})"

    # -- append ----------------------------------------------------------------------------

    def fits(self, nbytes: int) -> bool:
        return self.end + nbytes <= self.capacity

    def make_room(self, end: int) -> None:
        """Before bytes up to ``end`` go into the map: grow the disk reservation when less
        than half of its lead is left. Raises KafkaStorageError with nothing written when
        the disk cannot cover even ``end``."""
        if (
            self.reserved < self.capacity
            and self.reserved - end < min(max(end, RESERVE_MIN), RESERVE_MAX) // 2
        ):
            self._reserve_ahead(end)

    def advance(self, end: int) -> None:
        """The bytes up to ``end`` are written: move the cursor, keep the prefault window."""
        self.end = end
        if self.populated - end < prefault.MAX_AHEAD // 2:
            self.want_prefault()

    def _reserve_ahead(self, end: int) -> None:
        """Grow the reservation to :func:`reserve_goal` of ``end``. If the disk cannot give
        the whole lead, settle for what this batch needs; if not even that, raise."""
        assert self._fd is not None
        start = self.reserved
        goal = reserve_goal(end, self.capacity)
        try:
            files.reserve(self._fd, start, goal - start)
        except KafkaStorageError:
            need = min(self.capacity, prefault.page_up(end))
            if need <= start:
                return  # this batch is covered; the next append tries again
            files.reserve(self._fd, start, need - start)
            goal = need
        self.reserved = goal
        if not self.readahead and end >= READAHEAD_FROM:
            files.normal_readahead(self.map)
            self.readahead = True

    # -- prefault --------------------------------------------------------------------------

    def want_prefault(self) -> None:
        """Queue this file for the prefault thread when the populated region ahead of the
        cursor has shrunk below half its window (cheap: a few int compares)."""
        pf = self._prefaulter
        if (
            pf is not None
            and not self.prefault_pending
            and self.populated < self.reserved
            and self.populated - self.end < prefault.window(self.end, self.activated_end) // 2
            and pf.enabled
        ):
            self.prefault_pending = True
            pf.request(self)

    def prefault_step(self, madvise: prefault.Madvise) -> bool:
        """Called by the prefault thread, without the partition lock: populate the next
        ``prefault.STEP`` bytes ahead of the cursor. Returns True while more is wanted.

        ``end`` is read without the partition lock. The pending flag is cleared *before*
        the last look at ``end``, and an append moves ``end`` before it looks at the flag,
        so an append that lands meanwhile is seen by one side or the other."""
        with self._map_lock:
            if self._fd is None:
                self.prefault_pending = False
                return False
            start, goal = self._prefault_range()
            if start < goal:
                length = min(prefault.STEP, goal - start)
                if madvise(self._map_address + start, length):
                    self.prefault_pending = False
                    return False
                self.populated = start + length
            self.prefault_pending = False
            start, goal = self._prefault_range()
            if start < goal:
                self.prefault_pending = True
                return True
            return False

    def _prefault_range(self) -> tuple[int, int]:
        """Page-aligned ``[start, goal)`` still to populate ahead of the cursor."""
        end = self.end
        start = max(self.populated, end - end % prefault.PAGE)
        # Never past the disk reservation: populating a sparse page would allocate (and on
        # a full disk fail) outside posix_fallocate's named error.
        ahead = end + prefault.window(end, self.activated_end)
        goal = min(self.reserved, prefault.page_up(min(self.capacity, ahead)))
        return start, goal

    # -- durability ------------------------------------------------------------------------

    def flush(self) -> None:
        """msync the map, and once fsync the directory of a new file so its entry survives
        a machine crash. Safe without the partition lock (see the module docstring); a file
        sealed or parked meanwhile was msync'ed by that seal or park."""
        self._msync()
        self._sync_dir_once()

    def _msync(self) -> None:
        """msync under the map lock; the first failure is sticky (module docstring)."""
        with self._map_lock:
            if self._sync_error is not None:
                raise OSError(
                    errno.EIO, f"an earlier msync of {self.path} failed: {self._sync_error}"
                )
            if self._fd is None:
                return
            try:
                files.msync(self.map)
            except OSError as exc:
                self._sync_error = exc
                raise

    def _sync_dir_once(self) -> None:
        if not self.dir_synced:
            files.fsync_dir(self.path.parent)
            self.dir_synced = True

    # -- closing ---------------------------------------------------------------------------

    def seal(self) -> None:
        """msync, unmap, trim the file to ``end``, fsync and close it; the directory entry
        is made durable if it was not yet. Raises OSError (the caller names it)."""
        self._msync()
        fd = self._unmap()
        try:
            files.ftruncate(fd, self.end)
            files.fsync(fd)
        finally:
            os.close(fd)
        self._sync_dir_once()

    def park(self) -> None:
        """msync, unmap and close, keeping the file at its capacity with its zero tail."""
        self._msync()
        os.close(self._unmap())
        self._sync_dir_once()

    def discard(self) -> None:
        """Unmap and close without syncing (error paths, deletion, a crash in tests)."""
        if self._fd is not None:
            os.close(self._unmap())

    def _unmap(self) -> int:
        """Close the map, waiting for a running prefault step; returns the descriptor."""
        with self._map_lock:
            fd = self._fd
            assert fd is not None, "the active file was closed already"
            self.map.close()
            self._fd = None
            self._map_address = 0
            return fd
