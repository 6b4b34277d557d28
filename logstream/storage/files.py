"""File names, the metadata-write ritual, and the few OS calls that can fail under us.

Names inside a partition directory ``<topic>-<partition>/``::

    00000000000000000000.log         segment data, named by its base offset (20 decimal digits)
    00000000000000000000.index       offset index of that segment   (see index.py)
    00000000000000000000.timeindex   time index of that segment     (see index.py)
    log-start-offset                 checkpoint: the first readable offset (see checkpoint file)
    producer-state.json              idempotent-producer snapshot (see producer_state.py)
    *.tmp                            a half-written metadata file; deleted at open

Every metadata file is written with :func:`atomic_write`: write ``<name>.tmp``, fsync it,
rename it over ``<name>``, fsync the directory. After a crash a reader sees either the old
or the new file, never a mix; a leftover ``.tmp`` is garbage and is removed at open.

Permissions: every directory storage creates gets :func:`dir_mode` (0700 by default) and
every file :func:`file_mode` (0600), so records are readable only by the broker's user
(the umask can only narrow them). The modes are process-wide, set by ``LogManager`` from
its arguments (the broker's ``data_dir_mode`` / ``file_mode``): one process serves one
data directory.

The OS calls that can fail because the disk misbehaves (fallocate, write, ftruncate, msync,
fsync, syncfs) go through one :class:`~logstream.storage.io.FileOps` object; a test installs
its own with :func:`use_file_ops` to inject faults or count calls. Each failure is
translated once into :class:`~logstream.errors.KafkaStorageError` (:func:`storage_errors`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from logstream.codec.crc import crc32c
from logstream.errors import KafkaStorageError
from logstream.storage.io import FileOps

log = logging.getLogger("logstream.storage")

OFFSET_DIGITS = 20
LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
TMP_SUFFIX = ".tmp"
DELETED_SUFFIX = ".deleted"
LOG_START_FILE = "log-start-offset"
PRODUCER_STATE_FILE = "producer-state.json"
CLEAN_SHUTDOWN_FILE = ".clean-shutdown"
LOCK_FILE = ".lock"
META_DIR = "meta"

DEFAULT_DIR_MODE = 0o700
DEFAULT_FILE_MODE = 0o600
_modes = {"dir": DEFAULT_DIR_MODE, "file": DEFAULT_FILE_MODE}


def set_modes(dir_mode: int, file_mode: int) -> None:
    """Set the permission bits of directories and files created from now on (process-wide).
    Raises ValueError for bits outside 0o777."""
    for what, mode in (("dir_mode", dir_mode), ("file_mode", file_mode)):
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise ValueError(f"{what} must be permission bits in [0, 0o777], not {mode!r}")
    _modes["dir"], _modes["file"] = dir_mode, file_mode


def dir_mode() -> int:
    return _modes["dir"]


def file_mode() -> int:
    return _modes["file"]


def make_dir(path: str | os.PathLike[str]) -> None:
    """Create ``path`` (and missing parents) if absent; the directory itself gets
    :func:`dir_mode`, parents the process defaults."""
    os.makedirs(path, mode=dir_mode(), exist_ok=True)


_ops: FileOps = FileOps()


def secure_dir(path: Path, mode: int) -> None:
    """Create the directory ``path`` with ``mode``, or set ``mode`` on an existing one (the
    data directory's mode is what keeps other local users out of every file below it)."""
    make_dir(path)
    current = stat.S_IMODE(os.stat(path).st_mode)
    if current != mode:
        os.chmod(path, mode)
        log.info("data directory %s: mode %04o -> %04o", path, current, mode)


def file_ops() -> FileOps:
    """The file operations storage uses now."""
    return _ops


@contextlib.contextmanager
def use_file_ops(ops: FileOps) -> Iterator[FileOps]:
    """Route storage's file operations through ``ops`` inside the block (fault injection,
    call counting), process-wide; the previous ones are restored at the end."""
    global _ops
    previous, _ops = _ops, ops
    try:
        yield ops
    finally:
        _ops = previous


def segment_stem(base_offset: int) -> str:
    """``00000000000000000042`` for base offset 42."""
    if base_offset < 0:
        raise ValueError(f"negative base offset {base_offset}")
    return f"{base_offset:0{OFFSET_DIGITS}d}"


def parse_segment_stem(filename: str, suffix: str = LOG_SUFFIX) -> int | None:
    """The base offset named by ``filename`` if it is ``<20 digits><suffix>``, else None."""
    if not filename.endswith(suffix):
        return None
    stem = filename[: -len(suffix)]
    if len(stem) != OFFSET_DIGITS or not stem.isdigit():
        return None
    return int(stem)


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Translate an OSError raised inside the block into KafkaStorageError, once."""
    try:
        yield
    except KafkaStorageError:
        raise
    except OSError as exc:
        raise KafkaStorageError(f"{what}: {exc}") from exc


_deferred = threading.local()


@contextlib.contextmanager
def deferred_sync(path: str | os.PathLike[str]) -> Iterator[list[str]]:
    """In this thread, skip every :func:`msync`, :func:`fsync` and :func:`fsync_dir` inside
    the block and make it all durable at the end with one ``syncfs`` of the filesystem
    holding ``path`` (closing 5,000 partitions one fsync at a time takes longer than a
    supervisor waits before SIGKILL). Yields a list that holds the error when the final
    syncfs failed (then nothing in the block may be taken as durable). Other threads still
    sync as usual. Where ``syncfs`` is unavailable the block syncs as usual."""
    problems: list[str] = []
    ops = _ops
    if not ops.has_syncfs() or getattr(_deferred, "on", False):
        yield problems
        return
    _deferred.on = True
    try:
        yield problems
    finally:
        _deferred.on = False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ops.syncfs(fd)
    except OSError as exc:
        problems.append(f"syncfs({path}): {exc.strerror or exc}")
    finally:
        os.close(fd)


def sync_deferred() -> bool:
    """Whether this thread is inside :func:`deferred_sync` (its syncs are skipped)."""
    return bool(getattr(_deferred, "on", False))


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename or create/unlink inside it is durable."""
    if sync_deferred():
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _ops.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    The ritual: write ``path.tmp``, fsync it, ``os.replace`` it over ``path``, fsync the
    directory. Raises KafkaStorageError if any step fails (the old file is then intact).
    """
    target = Path(path)
    tmp = target.with_name(target.name + TMP_SUFFIX)
    with storage_errors(f"writing {target}"):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file_mode())
        try:
            view = memoryview(data)
            while view:
                written = _ops.write(fd, view)
                view = view[written:]
            fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        fsync_dir(target.parent)


def reserve(fd: int, start: int, length: int) -> None:
    """Reserve real disk blocks for ``[start, start + length)`` of ``fd``, a file whose size
    already covers that range (an active segment: its tail past the reservation is sparse).
    A sparse ``ftruncate`` alone would let a later write into the memory map hit a full disk
    as a SIGBUS that kills the process; reserving first turns a full disk into a
    KafkaStorageError here (ENOSPC, EDQUOT, EIO ...), so a later write into the map inside
    the reserved range can never SIGBUS."""
    if length <= 0:
        return
    try:
        _ops.fallocate(fd, start, length)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            # No fallocate: write zeros over the range (it holds no data yet; ENOSPC is
            # still a clean error).
            chunk = b"\0" * (1 << 20)
            try:
                pos, end = start, start + length
                while pos < end:
                    pos += os.pwrite(fd, chunk[: min(len(chunk), end - pos)], pos)
            except OSError as exc2:
                raise KafkaStorageError(
                    f"cannot reserve {length} bytes at {start} on disk: {exc2}"
                ) from exc2
            return
        raise KafkaStorageError(f"cannot reserve {length} bytes at {start} on disk: {exc}") from exc


def no_readahead(mm: mmap.mmap) -> None:
    """``madvise(MADV_RANDOM)`` on a write map. A fault on a page that is not in the page
    cache otherwise reads around it, up to the device's ``read_ahead_kb`` (8 MiB here): the
    first byte written into a new segment zero-filled 8 MiB of page cache (~2 ms; 512 new
    partitions: 1 s and 4 GiB). Append maps are written front to back, never read ahead,
    and reads go through ``pread``, which keeps the file's own readahead."""
    advice = getattr(mmap, "MADV_RANDOM", None)
    if advice is not None:
        with contextlib.suppress(OSError):
            mm.madvise(advice)


def normal_readahead(mm: mmap.mmap) -> None:
    """Undo :func:`no_readahead` (``MADV_NORMAL``): for a segment that has proven busy, the
    read-around on a write fault batches the page-cache allocation of the pages the next
    appends fill (back-to-back appends ~35 % faster than page-at-a-time faults)."""
    advice = getattr(mmap, "MADV_NORMAL", None)
    if advice is not None:
        with contextlib.suppress(OSError):
            mm.madvise(advice)


def msync(mm: mmap.mmap) -> None:
    """Write a map's dirty pages to disk (msync MS_SYNC) through the :class:`FileOps`."""
    if sync_deferred():
        return
    _ops.msync(mm)


def fsync(fd: int) -> None:
    """fsync a file descriptor through the :class:`FileOps`."""
    if sync_deferred():
        return
    _ops.fsync(fd)


def ftruncate(fd: int, length: int) -> None:
    """Set a file's size through the :class:`FileOps`."""
    _ops.ftruncate(fd, length)


def truncate(path: str | os.PathLike[str], length: int, *, sync: bool = False) -> None:
    """Set the size of the file at ``path`` (and fsync it when ``sync``)."""
    fd = os.open(path, os.O_RDWR)
    try:
        _ops.ftruncate(fd, length)
        if sync:
            fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def read_checkpoint(path: str | os.PathLike[str]) -> int | None:
    """Read a one-number checkpoint file; None if absent, or unreadable (logged as an
    error naming the file: the caller then trusts only what the segments say).

    Format version 1: ``1\n<value>\n<crc32c of the value's digits>\n``; version 0 (older
    files) is ``0\n<value>\n``, read without a checksum."""
    try:
        text = Path(path).read_text("ascii")
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, OSError) as exc:
        log.error("checkpoint %s is unreadable (%s); ignoring it", path, exc)
        return None
    lines = text.split()
    ok = (
        len(lines) == 3
        and lines[0] == "1"
        and lines[1].isdigit()
        and lines[2] == str(crc32c(lines[1].encode("ascii")))
    )
    if not ok and len(lines) == 2 and lines[0] == "0" and lines[1].isdigit():
        ok = True  # version 0: no checksum
    if not ok:
        log.error("checkpoint %s is damaged (%r); ignoring it", path, text[:80])
        return None
    return int(lines[1])


def write_checkpoint(path: str | os.PathLike[str], value: int) -> None:
    """Write a one-number checkpoint (format version 1, with its checksum)."""
    digits = str(value)
    atomic_write(path, f"1\n{digits}\n{crc32c(digits.encode('ascii'))}\n".encode("ascii"))


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit (an active partition
    holds 2 file descriptors, a read sealed segment 1; the common soft default of 1,024
    would cap a broker at a few hundred partitions). Returns (old, new) soft limits; logs
    when it changed. Harmless where the limit cannot be read or raised."""
    try:
        import resource
    except ImportError:  # not POSIX
        return (-1, -1)
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            logging.getLogger("logstream.storage").info(
                "raised the open-files limit (RLIMIT_NOFILE) from %d to %d", soft, hard
            )
            return soft, hard
    except (OSError, ValueError):
        pass
    return soft, soft
