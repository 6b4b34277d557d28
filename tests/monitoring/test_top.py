"""``logstream top``: the piped snapshot (a subprocess whose stdout is a pipe) and the live
view in a pseudo-terminal (pexpect), against a real broker's /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pexpect
from monitoring_helpers import Monitored

from logstream import Admin, Consumer, Producer
from logstream.cli.top import Snapshot, group_rows, topic_rows
from logstream.types import TopicPartition


def _env() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}


def _top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logstream", "top", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )


def _fill(monitored: Monitored) -> None:
    admin = Admin(monitored.address)
    admin.create_topic("quiet", partitions=1)
    admin.create_topic("busy", partitions=2)
    admin.close()
    producer = Producer(monitored.address)
    for i in range(200):
        producer.send("busy", b"%d" % i, partition=i % 2)
    producer.flush(10)
    producer.close()
    consumer = Consumer(monitored.address, group="slow-readers", auto_offset_reset="earliest")
    consumer.assign([TopicPartition("busy", 0)])
    consumer.commit({TopicPartition("busy", 0): 40})
    consumer.close()


def test_piped_top_prints_one_plain_snapshot(monitored: Monitored) -> None:
    _fill(monitored)
    stop = time.monotonic() + 30
    producer = Producer(monitored.address)

    # Produce to "busy" while top takes its two scrapes, so that it sorts first by rate.
    proc = subprocess.Popen(
        [sys.executable, "-m", "logstream", "top", "--http", monitored.http, "-n", "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    while proc.poll() is None and time.monotonic() < stop:
        producer.send("busy", b"more").result(10)
    out, err = proc.communicate(timeout=30)
    producer.close()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "TOPICS"
    assert lines[1].split()[:3] == ["TOPIC", "PARTITIONS", "IN/S"]
    assert lines[2].split()[0] == "busy"  # growing: sorted first
    assert float(lines[2].split()[2].replace(",", "")) > 0
    assert any(line.split()[:1] == ["quiet"] for line in lines)
    assert "\x1b[" not in out  # plain: no terminal escapes
    group_line = next(line for line in lines if line.startswith("slow-readers"))
    # lag: 100 records in partition 0 committed at 40, plus what went there meanwhile
    assert int(group_line.split()[2]) >= 60
    assert "QUEUE GROUPS" in lines


def test_top_without_a_listener_says_why(monitored: Monitored) -> None:
    result = _top("--http", "127.0.0.1:1", "-n", "0.1")
    assert result.returncode == 1
    assert "cannot read http://127.0.0.1:1/metrics" in result.stderr
    assert "Traceback" not in result.stderr


def test_live_top_redraws_and_quits_on_q(monitored: Monitored) -> None:
    _fill(monitored)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "logstream", "top", "--http", monitored.http, "-n", "0.2"],
        env=_env(),
        dimensions=(40, 120),
        encoding="utf-8",
        timeout=20,
    )
    try:
        child.expect("logstream top")
        child.expect("busy")
        child.expect("slow-readers")
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_rates_and_sorting_from_two_snapshots() -> None:
    def text(a_in: int, b_in: int, lag: int) -> str:
        return "\n".join(
            [
                "# TYPE logstream_topic_records_in counter",
                f'logstream_topic_records_in_total{{topic="a"}} {a_in}',
                f'logstream_topic_records_in_total{{topic="b"}} {b_in}',
                "# TYPE logstream_topic_partitions gauge",
                'logstream_topic_partitions{topic="a"} 1',
                'logstream_topic_partitions{topic="b"} 3',
                "# TYPE logstream_group_total_lag_records gauge",
                f'logstream_group_total_lag_records{{group="g"}} {lag}',
                "",
            ]
        )

    prev = Snapshot.parse(text(100, 100, 10), at=10.0)
    cur = Snapshot.parse(text(110, 300, 30), at=12.0)
    rows = topic_rows(cur, prev)
    assert [(r["topic"], r["in/s"]) for r in rows] == [("b", 100.0), ("a", 5.0)]
    assert group_rows(cur, prev)[0]["lag_growth/s"] == 10.0
    # a counter that went backwards (broker restart) is no rate
    assert topic_rows(Snapshot.parse(text(0, 0, 0), at=13.0), cur)[0]["in/s"] == 0.0
