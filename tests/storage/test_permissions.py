"""Data directory 0700 and files 0600 by default whatever the umask; both configurable."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from logstream.codec import encode_batch
from logstream.storage import LogManager, files


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """Umask 0: only the modes storage asks for protect the data (the umask can only narrow)."""
    old = os.umask(0)
    yield
    os.umask(old)
    files.set_modes(files.DEFAULT_DIR_MODE, files.DEFAULT_FILE_MODE)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _fill(data: Path, **modes: int) -> None:
    with LogManager.open(data, **modes) as m:
        m.create_topic("t", 2, {"segment_bytes": 1024, "flush_policy": "never"})
        log = m.get_log("t", 0)
        for i in range(20):  # several segments, so sealed ones and their indexes exist
            log.append(
                encode_batch([b"v%d" % i * 40], producer_id=7, producer_epoch=0, base_sequence=i)
            )


def _tree(data: Path) -> tuple[list[Path], list[Path]]:
    dirs, regular = [data], []
    for root, dirnames, filenames in os.walk(data):
        dirs += [Path(root, d) for d in dirnames]
        regular += [Path(root, f) for f in filenames]
    return dirs, regular


def test_a_fresh_data_dir_is_private(tmp_path):
    data = tmp_path / "data"
    _fill(data)
    dirs, regular = _tree(data)
    suffixes = {p.suffix for p in regular}
    assert {".log", ".index", ".timeindex", ".json"} <= suffixes, suffixes
    assert any(p.name == files.CLEAN_SHUTDOWN_FILE for p in regular)
    assert {p: oct(_mode(p)) for p in dirs if _mode(p) != 0o700} == {}
    assert {p: oct(_mode(p)) for p in regular if _mode(p) != 0o600} == {}


def test_the_modes_are_configurable(tmp_path):
    data = tmp_path / "data"
    _fill(data, dir_mode=0o750, file_mode=0o640)
    dirs, regular = _tree(data)
    assert {_mode(p) for p in dirs} == {0o750}
    assert {_mode(p) for p in regular} == {0o640}


def test_an_existing_open_data_dir_is_closed_to_others_at_open(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    assert _mode(data) == 0o755
    LogManager.open(data).close()
    assert _mode(data) == 0o700


def test_bad_modes_are_a_config_error(tmp_path):
    from logstream.errors import InvalidConfigError

    with pytest.raises(InvalidConfigError):
        LogManager.open(tmp_path / "data", file_mode=0o1777)
