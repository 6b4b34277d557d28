"""The CLI fails fast and clearly, and says what it did when stopped: a mistyped topic stops
``produce`` at the first line, Ctrl-C of ``produce`` reports what was stored, Ctrl-C of
``export`` leaves no partial file, Kafka's ``--acks`` values are accepted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_cli_process import env, logstream

from logstream.client import Admin
from logstream.testing.broker import RunningBroker, run_broker
from logstream.types import TopicPartition


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with run_broker(tmp_path_factory.mktemp("data")) as b:
        b.broker.manager.create_topic("ff", 2)
        b.broker.manager.create_topic("ff-int", 3)
        b.broker.manager.create_topic("ff-export", 1)
        yield b


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _end_offsets(broker: RunningBroker, topic: str, partitions: int) -> dict[int, int]:
    with Admin(broker.address) as admin:
        ends = admin.list_offsets({TopicPartition(topic, p): "latest" for p in range(partitions)})
    return {tp.partition: off for tp, off in ends.items()}


def test_produce_to_a_mistyped_topic_stops_at_the_first_line(broker: RunningBroker) -> None:
    lines = "".join(f"line {i}\n" for i in range(100))
    started = time.monotonic()
    p = logstream(broker, "produce", "no-such-topic", input=lines)
    elapsed = time.monotonic() - started
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == [
        "error: UNKNOWN_TOPIC_OR_PARTITION: unknown topic 'no-such-topic'"
    ], p.stderr
    # one round of metadata retries (~0.7 s) plus the interpreter's start, not 0.7 s per line
    assert elapsed < 8, elapsed


@pytest.mark.parametrize(
    ("alias", "mode"), [("all", "flushed"), ("-1", "flushed"), ("1", "leader"), ("0", "none")]
)
def test_kafka_acks_values_are_aliases(broker: RunningBroker, alias: str, mode: str) -> None:
    p = logstream(broker, "produce", "ff", "--acks", alias, "-m", f"acks={alias}")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("produced 1 records"), p.stdout


def test_acks_aliases_map_to_the_modes() -> None:
    from logstream.cli.produce import ACKS_ALIASES

    assert ACKS_ALIASES == {"all": "flushed", "-1": "flushed", "1": "leader", "0": "none"}


def test_ctrl_c_of_produce_reports_what_was_stored(broker: RunningBroker) -> None:
    count = 3000
    proc = subprocess.Popen(
        [sys.executable, "-m", "logstream", "produce", "ff-int", "--no-progress", "-K", ":"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(broker),
    )
    try:
        assert proc.stdin is not None
        # keys spread the records over the three partitions
        proc.stdin.write("".join(f"k{i}:v{i}\n" for i in range(count)))
        proc.stdin.flush()
        # the records are stored, the command is still reading (stdin stays open)
        _wait_for(
            lambda: sum(_end_offsets(broker, "ff-int", 3).values()) >= count,
            "the records to be stored",
        )
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ends = _end_offsets(broker, "ff-int", 3)
    assert proc.returncode == 130, (out, err)
    assert err.strip() == "interrupted", err
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"interrupted: {count} of {count} records read were stored"), out
    shown = {}
    for line in lines[1:]:
        part, offsets = line.strip().removeprefix("partition ").split(": offsets ")
        shown[int(part)] = int(offsets.split("-")[1]) + 1
    assert shown == {p: end for p, end in ends.items() if end}, (out, ends)


def test_ctrl_c_of_export_leaves_no_partial_file(broker: RunningBroker, tmp_path: Path) -> None:
    from logstream.client import Producer

    with Producer(broker.address) as producer:
        # enough that the export runs for seconds: it is interrupted while writing
        producer.send_batch("ff-export", [b"r%d" % i for i in range(300_000)]).result()
    target = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logstream",
            "export",
            "ff-export",
            "--to",
            str(target),
            "--rate",
            "100/s",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(broker),
    )
    try:
        _wait_for(lambda: any(f.stat().st_size for f in tmp_path.iterdir()), "the export to write")
        assert not target.exists(), "the export writes under the final name"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert list(tmp_path.iterdir()) == [], "a partial file was left behind"


def test_export_renames_into_place_when_done(broker: RunningBroker, tmp_path: Path) -> None:
    target = tmp_path / "all.csv"
    p = logstream(broker, "export", "ff-export", "--to", str(target), "--until", "+3")
    assert p.returncode == 0, p.stderr
    assert [f.name for f in tmp_path.iterdir()] == ["all.csv"]
    assert target.read_text().startswith("topic,partition,offset")
