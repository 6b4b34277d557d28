"""The data directory's ``.lock`` file: one process at a time may open a data directory.

The lock is an ``flock`` on ``<data-dir>/.lock`` taken without waiting; the kernel drops it
when the process dies, so a killed broker never leaves a stale lock behind. The file itself
stays (its presence means nothing).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from logstream.errors import KafkaStorageError
from logstream.storage import files


class DirectoryLock:
    """An exclusive hold on one data directory until ``release()`` (idempotent)."""

    def __init__(self, data_dir: Path, file_mode: int) -> None:
        with files.storage_errors(f"opening data directory {data_dir}"):
            self._fd = os.open(data_dir / files.LOCK_FILE, os.O_RDWR | os.O_CREAT, file_mode)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            self._fd = -1
            raise KafkaStorageError(
                f"data directory {data_dir} is in use by another process"
            ) from exc

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1
