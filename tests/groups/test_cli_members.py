"""`tail`/`consume --group G` as real members of G: a broker process, the CLI as processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from logstream.client import Admin, Producer
from logstream.testing.broker import BrokerProcess
from logstream.testing.wait import wait_for

pytestmark = pytest.mark.slow

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def broker(tmp_path):
    proc = BrokerProcess(
        tmp_path / "data",
        group_min_session_timeout_ms=500,
        group_heartbeat_interval_ms=200,
        group_expiry_check_interval_ms=50,
    ).start()
    yield proc
    proc.terminate()


def env(address: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, e.get("PYTHONPATH")) if p)
    e["LOGSTREAM_BROKER"] = address
    return e


def logstream(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        capture_output=True,
        text=True,
        env=env(address),
        timeout=60,
    )


def spawn(address: str, out: Path, *args: str) -> subprocess.Popen[bytes]:
    with out.open("wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "logstream", *args],
            stdout=f,
            stderr=subprocess.PIPE,
            env=env(address),
        )


def describe(address: str, group: str, *, missing_ok: bool = False) -> list[dict]:
    """`group describe` rows (one per partition); [] for no group yet with ``missing_ok``."""
    p = logstream(address, "group", "describe", group, "-o", "json")
    if missing_ok and "no group" in p.stderr:
        return []
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    return doc["partitions"] if isinstance(doc, dict) else doc


def owners(rows: list[dict]) -> dict[str, int]:
    """Partitions per member."""
    out: dict[str, int] = {}
    for r in rows:
        if r["member"] not in (None, "-"):
            out[r["member"]] = out.get(r["member"], 0) + 1
    return out


# Worker processes take seconds to start under load.
wait_for = partial(wait_for, timeout=30.0)


def create(address: str, topic: str, partitions: int, per_partition: int) -> None:
    with Admin(address) as admin:
        admin.create_topic(topic, partitions)
    produce(address, topic, partitions, per_partition)


def produce(address: str, topic: str, partitions: int, per_partition: int) -> None:
    with Producer(address, linger_ms=1) as p:
        for i in range(partitions * per_partition):
            p.send(topic, b"v%d" % i, partition=i % partitions)
        p.flush()


def test_two_consumers_with_one_group_split_the_partitions(broker, tmp_path):
    create(broker.address, "orders", 4, 0)
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    procs = [
        spawn(broker.address, out, "consume", "orders", "--group", "G", "--from", "beginning")
        for out in outs
    ]
    try:
        wait_for(
            lambda: (
                sorted(owners(describe(broker.address, "G", missing_ok=True)).values()) == [2, 2]
            ),
            what="two members with two partitions each",
        )
        produce(broker.address, "orders", 4, 25)  # once they share: each gets its half
        total = lambda: sum(len(o.read_text().split()) for o in outs)  # noqa: E731
        wait_for(lambda: total() >= 100, what="every record printed")
        # Each record was printed once, by one of them (before: both printed all 100).
        values = [v for o in outs for v in o.read_text().split()]
        assert sorted(values) == sorted(f"v{i}" for i in range(100))
        assert all(o.read_text() for o in outs)
        wait_for(
            lambda: sum(p["committed"] or 0 for p in describe(broker.address, "G")) == 100,
            what="the commits of both members",
        )
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)


def test_a_resumed_group_skips_no_partition(broker):
    create(broker.address, "t3", 3, 33)
    first = logstream(
        broker.address, "consume", "t3", "--group", "r", "--from", "beginning", "-c", "10"
    )
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.split()) == 10
    second = logstream(broker.address, "consume", "t3", "--group", "r", "-e")
    assert second.returncode == 0, second.stderr
    # The 89 the first run did not print, none twice (before: the partitions the first
    # run printed nothing from started at the end, and their records were skipped).
    assert len(second.stdout.split()) == 89
    assert not set(first.stdout.split()) & set(second.stdout.split())


def test_describe_lists_never_committed_partitions_with_their_whole_backlog(broker):
    create(broker.address, "t3", 3, 33)
    from logstream.client import Consumer
    from logstream.types import TopicPartition

    with Consumer(broker.address, group="partial") as c:
        c.commit({TopicPartition("t3", 0): 16})  # a standalone commit in partition 0 only
    d = describe(broker.address, "partial")
    rows = {p["partition"]: p for p in d}
    assert sorted(rows) == [0, 1, 2]  # before: only partition 0
    assert rows[1]["committed"] is None and rows[1]["lag"] == 33
    assert sum(p["lag"] for p in d) == 99 - 16


def test_tail_last_n_with_a_group_prints_them_and_commits(broker):
    create(broker.address, "big", 2, 50)
    p = logstream(broker.address, "tail", "big", "--group", "g3", "-n", "5", "-o", "jsonl")
    assert p.returncode == 0, p.stderr
    shown = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(shown) == 5  # before: nothing
    d = describe(broker.address, "g3")
    assert {r["partition"]: r["committed"] for r in d} == {0: 50, 1: 50}
    assert owners(d) == {}  # it left when done
