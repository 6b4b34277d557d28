"""Recovery trusts no metadata it has not verified: topic metadata carries a checksum and
names its file when it is damaged; interrupted creates and deletes are rolled back or
finished; partition directories without metadata are never dropped silently; a log-start
checkpoint past the log end deletes nothing; an empty clean-shutdown marker over a crashed
directory does not make its tail trusted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from storage_helpers import make_batch
from test_recovery import abandon, build, open_log, survivors

from logstream.codec import iter_batches
from logstream.errors import KafkaStorageError
from logstream.storage import LogManager, files
from logstream.storage.topic_meta import CREATING, DELETING, TopicMeta, format_meta


def _topic_with_data(path: Path, partitions: int = 2, *, config: dict | None = None) -> None:
    with LogManager.open(path, prefault_pages=False) as mgr:
        mgr.create_topic("t", partitions, config=config)
        for p in range(partitions):
            mgr.get_log("t", p).append(make_batch(3, tag=p))


def _offsets(mgr: LogManager, partition: int) -> list[int]:
    data = mgr.get_log("t", partition).read(0, 1 << 20)
    return [int(o) for b in iter_batches(data) for o in b.offsets]


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # torn: not JSON
        lambda b: b"",
        lambda b: b.replace(b'"partitions": 2', b'"partitions": 3'),  # valid JSON, wrong
        lambda b: b.replace(b'"name": "t"', b'"name": "u"'),
    ],
    ids=["torn", "empty", "partitions-flipped", "foreign-name"],
)
def test_damaged_topic_metadata_refuses_the_open_and_names_the_file(tmp_path, damage):
    _topic_with_data(tmp_path)
    meta = tmp_path / "meta" / "t.json"
    meta.write_bytes(damage(meta.read_bytes()))
    with pytest.raises(KafkaStorageError) as info:  # before: JSONDecodeError, or 3 partitions
        LogManager.open(tmp_path, prefault_pages=False)
    assert str(meta) in str(info.value)


def test_version_1_metadata_is_still_read(tmp_path):
    _topic_with_data(tmp_path, config={"retention_ms": 1000})
    meta = tmp_path / "meta" / "t.json"
    doc = json.loads(meta.read_bytes())
    assert doc["version"] == 2 and isinstance(doc["crc32c"], int)
    meta.write_text(
        json.dumps({"version": 1, "name": "t", "partitions": 2, "config": doc["config"]})
    )
    with LogManager.open(tmp_path, prefault_pages=False) as mgr:
        assert mgr.topic("t").config.retention_ms == 1000
        assert _offsets(mgr, 1) == [0, 1, 2]


def test_a_missing_metadata_file_restores_the_topic_loudly(tmp_path, caplog):
    _topic_with_data(tmp_path, partitions=3)
    (tmp_path / "meta" / "t.json").unlink()
    with caplog.at_level(logging.ERROR), LogManager.open(tmp_path, prefault_pages=False) as mgr:
        assert mgr.topics() == ["t"]  # before: the topic vanished without a word
        assert len(mgr.topic("t").partitions) == 3
        assert _offsets(mgr, 2) == [0, 1, 2]
    assert any("t.json is missing" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "meta" / "t.json").exists()


def test_empty_orphan_directories_are_removed(tmp_path):
    with LogManager.open(tmp_path, prefault_pages=False):
        pass
    for p in range(2):  # an older version's create, killed before its metadata was written
        (tmp_path / f"gone-{p}").mkdir()
    (tmp_path / "not-a-partition-x").mkdir()  # not a partition name: left alone
    with LogManager.open(tmp_path, prefault_pages=False) as mgr:
        assert mgr.topics() == []
    assert not (tmp_path / "gone-0").exists() and not (tmp_path / "gone-1").exists()
    assert (tmp_path / "not-a-partition-x").exists()


@pytest.mark.parametrize("state", [CREATING, DELETING])
def test_an_interrupted_create_is_rolled_back_and_a_delete_finished(tmp_path, state):
    _topic_with_data(tmp_path, partitions=2)
    # What a kill -9 leaves between the intent and the last step.
    (tmp_path / "meta" / "t.json").write_bytes(format_meta(TopicMeta("t", 2, {}, state)))
    with LogManager.open(tmp_path, prefault_pages=False) as mgr:
        assert mgr.topics() == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("t")) == []
    assert not (tmp_path / "meta" / "t.json").exists()
    with LogManager.open(tmp_path, prefault_pages=False) as mgr:  # and the name is free
        mgr.create_topic("t", 1)


def test_directories_of_an_interrupted_grow_are_removed(tmp_path):
    _topic_with_data(tmp_path, partitions=1)
    (tmp_path / "t-1").mkdir()  # add_partitions killed before the metadata said 2
    with LogManager.open(tmp_path, prefault_pages=False) as mgr:
        assert len(mgr.topic("t").partitions) == 1
    assert not (tmp_path / "t-1").exists()


def test_a_log_start_checkpoint_past_the_end_deletes_nothing(tmp_path, caplog):
    with LogManager.open(tmp_path, prefault_pages=False) as mgr:
        mgr.create_topic("t", 1, config={"segment_bytes": 1024})
        log = mgr.get_log("t", 0)
        for i in range(20):
            log.append(make_batch(3, tag=i, value_size=100))
        end = log.log_end_offset
    segments = sorted((tmp_path / "t-0").glob("*.log"))
    assert len(segments) > 3
    files.write_checkpoint(tmp_path / "t-0" / files.LOG_START_FILE, 10**12)
    with caplog.at_level(logging.ERROR), LogManager.open(tmp_path, prefault_pages=False) as mgr:
        assert _offsets(mgr, 0) == list(range(end))  # before: every sealed segment deleted
        assert mgr.get_log("t", 0).log_start_offset == 0
    assert sorted((tmp_path / "t-0").glob("*.log")) == segments
    assert any(files.LOG_START_FILE in r.getMessage() for r in caplog.records)


def test_a_damaged_checkpoint_is_ignored_and_an_old_one_read(tmp_path):
    path = tmp_path / "cp"
    files.write_checkpoint(path, 1234)
    assert files.read_checkpoint(path) == 1234
    path.write_text(path.read_text().replace("1234", "1284"))
    assert files.read_checkpoint(path) is None
    path.write_text("0\n77\n")  # version 0
    assert files.read_checkpoint(path) == 77


def test_an_empty_marker_over_a_crashed_directory_recovers_the_tail(tmp_path):
    """A clean-shutdown claim (empty marker: "every last segment sealed") over a segment
    that crashed with a torn batch: the tail is recovered, not trusted."""
    positions, batches = build(tmp_path / "p", n=8)
    seg = tmp_path / "p" / "00000000000000000000.log"
    end = positions[-1] + len(batches[-1])
    with open(seg, "r+b") as f:
        f.seek(end)
        f.write(batches[0][:40])  # a torn batch after the last good one
    log = open_log(tmp_path / "p", clean=True)
    assert survivors(log) == batches
    assert log.recovery_report.bytes_truncated == 40
    log.append(make_batch(2, tag=99))
    got = survivors(log)
    assert got[:-1] == batches and len(got) == len(batches) + 1
    abandon(log)
