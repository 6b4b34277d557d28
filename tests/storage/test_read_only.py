"""DirectorySnapshot: forensics without changing a byte of the directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from storage_helpers import make_batch

from logstream.codec import iter_batches
from logstream.errors import KafkaStorageError
from logstream.storage import DirectorySnapshot, LogManager, PartitionLog, TopicConfig, files

CONFIG = {"segment_bytes": 4096, "flush_policy": "never", "retention_ms": -1}


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content hash (``dir`` for directories)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def crash(mgr: LogManager) -> None:
    """Drop every handle without sealing, snapshots or the marker (a SIGKILL)."""
    mgr.abandon()


def build_crashed(root: Path, *, torn: bool = True) -> int:
    """Two partitions, several sealed segments, a crash; partition 0's active segment gets
    a torn batch after its last good one. Returns the number of good records in p0."""
    mgr = LogManager.open(root)
    mgr.create_topic("t", 2, CONFIG)
    for i in range(30):
        mgr.get_log("t", i % 2).append(make_batch(3, value_size=100, tag=i))
    good = mgr.get_log("t", 0).log_end_offset
    seg = mgr.get_log("t", 0).segments()[-1]
    end = seg.size
    crash(mgr)
    if torn:
        with open(seg.log_path, "r+b") as f:
            f.seek(end)
            f.write(make_batch(5, value_size=100, tag=99)[:150])  # a torn write
    # leftovers a writable open would clean up
    (root / "meta" / "x.json.tmp").write_bytes(b"{")
    (root / "gone-0.deleted").mkdir()
    (root / "t-1" / "00000000000000099999.index").write_bytes(b"\0" * 8)
    return good


def read_all(mgr: LogManager | DirectorySnapshot, partition: int) -> list[int]:
    log = mgr.get_log("t", partition)
    if log.log_end_offset == log.log_start_offset:
        return []
    blob = log.read(log.log_start_offset, 1 << 30)
    return [int(o) for b in iter_batches(blob) for o in b.offsets]


def test_read_only_open_of_a_crashed_dir_changes_nothing(tmp_path):
    good = build_crashed(tmp_path)
    before = snapshot(tmp_path)
    with DirectorySnapshot.open(tmp_path) as ro:
        report = ro.recovery_reports[("t", 0)]
        assert report.read_only and not report.clean_shutdown
        assert report.bytes_truncated > 0  # seen past the end, not cut
        assert read_all(ro, 0) == list(range(good))  # stops at the torn batch
        assert read_all(ro, 1) == list(range(ro.get_log("t", 1).log_end_offset))
        assert ro.get_log("t", 0).offset_for_timestamp(0) == 0
        assert ro.get_log("t", 0).record_for_timestamp(1_700_000_000_001) == (1, 1_700_000_000_001)
    assert snapshot(tmp_path) == before
    # The same directory opened for writing would have been changed (the test can fail):
    with LogManager.open(tmp_path) as rw:
        assert rw.recovery_reports[("t", 0)].bytes_truncated > 0
        assert rw.get_log("t", 0).log_end_offset == good
    assert snapshot(tmp_path) != before


def test_sealed_index_damage_is_rebuilt_in_memory_only(tmp_path):
    build_crashed(tmp_path, torn=False)
    index = tmp_path / "t-0" / "00000000000000000000.index"
    index.write_bytes(b"\xff" * 16)  # fails the sanity check
    before = snapshot(tmp_path)
    with DirectorySnapshot.open(tmp_path) as ro:
        log = ro.get_log("t", 0)
        assert read_all(ro, 0) == list(range(log.log_end_offset))
        assert log.segments()[0].indexes_rebuilt
    assert snapshot(tmp_path) == before


def test_clean_shutdown_marker_is_left_alone(tmp_path):
    with LogManager.open(tmp_path) as m:
        m.create_topic("t", 1, CONFIG)
        for i in range(10):
            m.get_log("t", 0).append(make_batch(2, tag=i))
    before = snapshot(tmp_path)
    assert files.CLEAN_SHUTDOWN_FILE in before
    with DirectorySnapshot.open(tmp_path) as ro:
        assert ro.recovery_reports[("t", 0)].clean_shutdown
        assert read_all(ro, 0) == list(range(20))
    assert snapshot(tmp_path) == before


def test_runs_next_to_a_live_writer_and_never_blocks_it(tmp_path):
    live = LogManager.open(tmp_path)  # holds the directory lock, active segment mapped
    live.create_topic("t", 1, {"segment_bytes": 1 << 20, "flush_policy": "never"})
    log = live.get_log("t", 0)
    for i in range(10):
        log.append(make_batch(2, tag=i))
    with pytest.raises(KafkaStorageError, match="in use"):
        LogManager.open(tmp_path)
    ro = DirectorySnapshot.open(tmp_path)  # no lock: works, sees the page cache
    assert read_all(ro, 0) == list(range(20))
    assert ro.recovery_reports[("t", 0)].bytes_truncated == 0  # a zero tail is a clean end
    log.append(make_batch(2, tag=10))  # the writer goes on; the reader keeps its snapshot
    assert ro.get_log("t", 0).log_end_offset == 20
    ro.close()
    live.close()
    with DirectorySnapshot.open(tmp_path) as again:
        assert again.get_log("t", 0).log_end_offset == 22


def test_a_snapshot_offers_no_writes(tmp_path):
    """Read-only is a type, not a mode: neither the directory nor a partition of a snapshot
    has a method that could change a file."""
    build_crashed(tmp_path, torn=False)
    writes = (
        "append",
        "flush",
        "flush_due",
        "enforce_retention",
        "delete_segments_before",
        "create_topic",
        "delete_topic",
        "alter_topic_config",
        "add_partitions",
    )
    with DirectorySnapshot.open(tmp_path) as ro:
        for obj in (ro, ro.get_log("t", 0)):
            assert [w for w in writes if hasattr(obj, w)] == []
    log_writes = ("append", "flush", "enforce_retention", "delete_segments_before")
    assert [w for w in log_writes if not hasattr(PartitionLog, w)] == []  # the names are right


def test_reads_after_close_are_a_named_error(tmp_path):
    build_crashed(tmp_path, torn=False)
    ro = DirectorySnapshot.open(tmp_path)
    log = ro.get_log("t", 0)
    ro.close()
    with pytest.raises(KafkaStorageError, match="closed"):
        log.read(0)


def test_missing_dir_is_an_error_and_is_not_created(tmp_path):
    with pytest.raises(KafkaStorageError, match="does not exist"):
        DirectorySnapshot.open(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()
    (tmp_path / "empty").mkdir()
    with DirectorySnapshot.open(tmp_path / "empty") as ro:
        assert ro.topics() == []
    assert list((tmp_path / "empty").iterdir()) == []


def test_retention_checkpoint_ahead_of_files_is_honoured_without_deleting(tmp_path):
    config = TopicConfig(segment_bytes=4096, flush_policy="never", retention_ms=-1)
    with LogManager.open(tmp_path) as m:
        m.create_topic("t", 1, config)
        for i in range(30):
            m.get_log("t", 0).append(make_batch(3, value_size=100, tag=i))
        bases = [s.base_offset for s in m.get_log("t", 0).segments()]
    files.write_checkpoint(tmp_path / "t-0" / files.LOG_START_FILE, bases[2])
    before = snapshot(tmp_path)
    with DirectorySnapshot.open(tmp_path) as ro:
        log = ro.get_log("t", 0)
        assert log.log_start_offset == bases[2]
        assert read_all(ro, 0)[0] == bases[2]
    assert snapshot(tmp_path) == before


def _tail_data_dir(path: Path) -> list[str]:
    from click.testing import CliRunner

    from logstream.cli.main import main

    r = CliRunner().invoke(
        main,
        [
            "--broker",
            "127.0.0.1:1",
            "tail",
            "t",
            "--from",
            "beginning",
            "--until",
            "end",
            "--data-dir",
            str(path),
            "--format",
            "{partition} {offset}",
        ],
    )
    assert r.exit_code == 0, r.output
    return r.stdout.splitlines()


def test_cli_tail_data_dir_reads_a_crashed_dir_without_changing_it(tmp_path):
    good = build_crashed(tmp_path)
    before = snapshot(tmp_path)
    lines = _tail_data_dir(tmp_path)
    assert [ln for ln in lines if ln.startswith("0 ")] == [f"0 {o}" for o in range(good)]
    assert snapshot(tmp_path) == before


def test_cli_tail_data_dir_runs_next_to_a_broker_holding_the_lock(tmp_path):
    with LogManager.open(tmp_path) as live:
        live.create_topic("t", 1, CONFIG)
        for i in range(5):
            live.get_log("t", 0).append(make_batch(2, tag=i))
        assert _tail_data_dir(tmp_path) == [f"0 {o}" for o in range(10)]


def test_refresh_follows_a_live_writer_across_rolls(tmp_path):
    live = LogManager.open(tmp_path)
    live.create_topic("t", 1, {"segment_bytes": 8192, "flush_policy": "never"})
    log = live.get_log("t", 0)
    for i in range(5):
        log.append(make_batch(3, value_size=100, tag=i, ts=1000 + 10 * i))
    ro = DirectorySnapshot.open(tmp_path)
    assert ro.get_log("t", 0).log_end_offset == 15
    ro.refresh()  # nothing new
    assert ro.get_log("t", 0).log_end_offset == 15
    for i in range(5, 60):  # several rolls
        log.append(make_batch(3, value_size=100, tag=i, ts=1000 + 10 * i))
    ro.refresh()
    rlog = ro.get_log("t", 0)
    assert rlog.log_end_offset == log.log_end_offset == 180
    assert rlog.segment_count == log.segment_count
    assert read_all(ro, 0) == list(range(180))
    assert rlog.offset_for_timestamp(1000 + 10 * 40) == 120  # time index extended too
    assert rlog.read(121, 1) == log.read(121, 1)
    # a half-written batch at the live end is not shown, then shown once complete
    seg = log.segments()[-1]
    whole = make_batch(2, value_size=50, tag=99)
    seg.active_file.map[seg.size : seg.size + 100] = whole[:100]
    ro.refresh()
    assert rlog.log_end_offset == 180
    log.segments()[-1].active_file.map[seg.size : seg.size + 100] = b"\0" * 100
    log.append(whole)
    ro.refresh()
    assert rlog.log_end_offset == 182
    ro.close()
    live.close()


def test_cli_tail_follow_data_dir_sees_a_live_writer(tmp_path):
    import threading

    from click.testing import CliRunner

    from logstream.cli.main import main

    live = LogManager.open(tmp_path)
    live.create_topic("t", 1, CONFIG)
    log = live.get_log("t", 0)
    for i in range(3):
        log.append(make_batch(2, tag=i))
    result = {}

    def run_cli() -> None:
        result["r"] = CliRunner().invoke(
            main,
            [
                "--broker",
                "127.0.0.1:1",
                "tail",
                "t",
                "-f",
                "--from",
                "beginning",
                "-c",
                "10",
                "--data-dir",
                str(tmp_path),
                "--format",
                "{offset}",
            ],
        )

    cli = threading.Thread(target=run_cli, daemon=True)
    cli.start()
    cli.join(0.5)
    for i in range(3, 5):  # appended after the CLI opened the directory
        log.append(make_batch(2, tag=i))
    cli.join(10)
    live.close()
    assert not cli.is_alive(), "tail -f never saw the records appended after its open"
    r = result["r"]
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == [str(o) for o in range(10)]
