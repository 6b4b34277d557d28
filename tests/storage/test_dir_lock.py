"""One LogManager at a time per data directory; a crash (abandon) lets the next one in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from storage_helpers import make_batch

from logstream.errors import KafkaStorageError
from logstream.storage.manager import LogManager


def test_a_second_open_is_refused_by_name_until_the_first_closes(tmp_path: Path) -> None:
    first = LogManager.open(tmp_path)
    with pytest.raises(KafkaStorageError, match="in use by another process"):
        LogManager.open(tmp_path)
    first.close()
    LogManager.open(tmp_path).close()


def test_another_process_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    mgr = LogManager.open(tmp_path)
    probe = (
        "import sys\n"
        "from logstream.errors import KafkaStorageError\n"
        "from logstream.storage.manager import LogManager\n"
        "try:\n"
        f"    LogManager.open({str(tmp_path)!r})\n"
        "except KafkaStorageError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    held = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert held.returncode == 3 and "in use by another process" in held.stdout
    mgr.abandon()
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert free.returncode == 0, free.stdout + free.stderr


def test_abandon_leaves_an_unclean_directory_that_recovers(tmp_path: Path) -> None:
    mgr = LogManager.open(tmp_path)
    mgr.create_topic("t", 1)
    log = mgr.get_log("t", 0)
    log.append(make_batch(3))
    mgr.abandon()
    with pytest.raises(KafkaStorageError):
        log.append(make_batch(1))
    again = LogManager.open(tmp_path)
    log = again.get_log("t", 0)
    assert not log.recovery_report.clean_shutdown
    assert log.log_end_offset == 3
    again.close()
