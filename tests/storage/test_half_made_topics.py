"""A create or grow that fails half-way leaves nothing on disk and the topic as it was."""

from __future__ import annotations

import pytest

from logstream.errors import KafkaStorageError
from logstream.storage import LogManager, files


def _block_meta_write(data, name):  # type: ignore[no-untyped-def]
    """A directory where atomic_write puts its temporary file: the metadata write fails."""
    blocker = data / files.META_DIR / f"{name}.json{files.TMP_SUFFIX}"
    blocker.mkdir()
    return blocker


def test_a_failed_create_removes_its_partition_directories(tmp_path):
    with LogManager.open(tmp_path) as m:
        blocker = _block_meta_write(tmp_path, "t")
        with pytest.raises(KafkaStorageError):
            m.create_topic("t", 4)
        blocker.rmdir()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("t-")] == []
        assert "t" not in m.topics()
        m.create_topic("t", 2)  # nothing half-made in the way
        assert len(m.topic("t").partitions) == 2


def test_a_failed_grow_keeps_the_old_partitions_and_removes_the_new(tmp_path):
    with LogManager.open(tmp_path) as m:
        m.create_topic("t", 2)
        blocker = _block_meta_write(tmp_path, "t")
        with pytest.raises(KafkaStorageError):
            m.add_partitions("t", 5)
        blocker.rmdir()
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("t-")) == [
            "t-0",
            "t-1",
        ]
        assert len(m.topic("t").partitions) == 2
        m.add_partitions("t", 3)
    with LogManager.open(tmp_path) as m:
        assert len(m.topic("t").partitions) == 3
