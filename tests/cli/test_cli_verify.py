"""``logstream verify DATA_DIR`` as a process over real, damaged segment files: one line per
damaged range, a summary, exit 0 clean / 1 damage / 2 usage or I/O error, JSON for scripts,
and progress on stderr."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from logstream.cli import verify as verify_cli
from logstream.cli.main import main
from logstream.codec import encode_batch
from logstream.storage import LogManager, TopicConfig

BATCHES = 80  # of 3 records: offsets 0..239, about 29 batches per 4 KiB segment


def _write(data_dir: Path) -> list[Path]:
    """Topics ``t`` (the one damaged) and ``u`` (never damaged); ``t``'s segment files."""
    with LogManager.open(data_dir, prefault_pages=False) as mgr:
        for name in ("t", "u"):
            mgr.create_topic(name, 1, config=TopicConfig(segment_bytes=4096))
            log = mgr.get_log(name, 0)
            for i in range(BATCHES):
                log.append(encode_batch([b"%s-%d-%d" % (name.encode(), i, k) for k in range(3)]))
    return sorted((data_dir / "t-0").glob("*.log"))


def _positions(segment: Path) -> list[int]:
    data = segment.read_bytes()
    out, pos = [], 0
    while pos + 12 <= len(data) and any(data[pos : pos + 12]):
        out.append(pos)
        pos += struct.unpack_from("<i", data, pos + 8)[0]
    return out


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "logstream", "verify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_a_clean_directory_exits_0_with_a_summary(tmp_path: Path) -> None:
    _write(tmp_path)
    done = _run(str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [done.stdout.strip()]
    assert done.stdout.startswith(f"clean: 2 topics, 2 partitions, {6 * BATCHES} offsets")
    assert done.stderr == ""  # a short scan prints no progress line


def test_a_flipped_byte_is_a_named_range_and_exit_1(tmp_path: Path) -> None:
    first = _write(tmp_path)[0]
    pos = _positions(first)[2]  # offsets 6..8
    raw = bytearray(first.read_bytes())
    raw[pos + 100] ^= 0x40  # a record byte: the CRC finds it
    first.write_bytes(bytes(raw))
    done = _run(str(tmp_path))
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("t 0 6..8: CRC mismatch")
    assert lines[-1].startswith("damaged: 1 range in 1 partition")
    assert len(lines) == 2
    assert "rebuilding" not in done.stderr  # storage's log lines only with --verbose


def test_a_truncated_sealed_segment_names_the_missing_offsets(tmp_path: Path) -> None:
    segments = _write(tmp_path)
    first, second = segments[0], segments[1]
    positions = _positions(first)
    os.truncate(first, positions[-3] + 10)  # the last three batches of the segment, cut
    done = _run(str(tmp_path), "-o", "json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["clean"] is False and doc["partitions"] == 2
    next_base = int(second.stem)
    [damage] = doc["damage"]
    assert (damage["topic"], damage["partition"]) == ("t", 0)
    assert damage["first_offset"] == next_base - 9 and damage["last_offset"] == next_base - 1


def test_a_zeroed_tail_of_a_sealed_segment_and_of_the_parked_last_one(tmp_path: Path) -> None:
    segments = _write(tmp_path)
    first, last = segments[0], segments[-1]
    positions = _positions(first)
    raw = bytearray(first.read_bytes())
    raw[positions[-1] :] = bytes(len(raw) - positions[-1])  # the sealed segment's last batch
    first.write_bytes(bytes(raw))
    # The parked last segment (the clean-shutdown marker says where it ends): a zeroed
    # middle batch is damage, not a torn tail, since good batches follow it.
    last_positions = _positions(last)
    raw = bytearray(last.read_bytes())
    at, following = last_positions[3], last_positions[4]
    raw[at:following] = bytes(following - at)
    last.write_bytes(bytes(raw))
    done = _run(str(tmp_path), "--topic", "t")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    base = int(last.stem)
    assert lines[0].startswith(f"t 0 {int(segments[1].stem) - 3}..{int(segments[1].stem) - 1}:")
    assert lines[1].startswith(f"t 0 {base + 9}..{3 * BATCHES - 1}:")
    assert lines[2].startswith("damaged: 2 ranges in 1 partition")
    assert "1 topic, 1 partition" in lines[2]  # --topic t: u was not scanned


def test_usage_and_io_errors_exit_2(tmp_path: Path) -> None:
    _write(tmp_path)
    unknown = _run(str(tmp_path), "--topic", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: unknown topic 'nope'"
    missing = _run(str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_unreadable_topic_metadata_is_damage(tmp_path: Path) -> None:
    _write(tmp_path)
    meta = tmp_path / "meta" / "u.json"
    meta.write_bytes(meta.read_bytes()[:-5])
    result = CliRunner().invoke(main, ["verify", str(tmp_path), "-q"])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[0].startswith("u -: metadata u.json unreadable")


def test_plain_progress_on_stderr_when_it_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path)
    monkeypatch.setattr(verify_cli, "PLAIN_PROGRESS_EVERY_S", 0.0)
    result = CliRunner().invoke(main, ["verify", str(tmp_path)])
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("verify: ")]
    assert progress and progress[-1].startswith("verify: 100% (")
    quiet = CliRunner().invoke(main, ["verify", str(tmp_path), "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_an_in_process_run_leaves_the_storage_log_level_as_it_was(tmp_path: Path) -> None:
    import logging

    _write(tmp_path)
    storage_log = logging.getLogger("logstream.storage")
    before = storage_log.level
    result = CliRunner().invoke(main, ["verify", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    assert storage_log.level == before
