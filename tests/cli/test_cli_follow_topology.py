"""``tail -f`` while the topic changes under it, as real processes: a topic deleted meanwhile
ends it with one line and exit 1; partitions added meanwhile are followed too."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from logstream.client import Admin, Producer
from logstream.testing.broker import BrokerProcess
from logstream.testing.wait import wait_for

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "data").start()
    yield proc
    proc.terminate()


def env(address: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, e.get("PYTHONPATH")) if p)
    e["LOGSTREAM_BROKER"] = address
    return e


def follow(address: str, out: Path, topic: str, *extra: str) -> subprocess.Popen[str]:
    with out.open("w") as f:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "logstream",
                "tail",
                topic,
                "-f",
                "--format",
                "{partition}:{value}",
                *extra,
            ],
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            env=env(address),
        )


# The tail processes take seconds to start under load.
wait_for = partial(wait_for, timeout=30.0)


def send(address: str, topic: str, value: bytes, partition: int) -> None:
    with Producer(address, linger_ms=0) as p:
        p.send(topic, value, partition=partition)
        p.flush()


@pytest.mark.parametrize(
    "extra", [(), ("--group", "watchers", "--from", "beginning")], ids=["plain", "group-member"]
)
def test_tail_f_on_a_topic_deleted_meanwhile_says_so_and_exits_1(broker, tmp_path, extra):
    with Admin(broker.address) as admin:
        admin.create_topic("gone", 1)
        out = tmp_path / "out.txt"
        proc = follow(broker.address, out, "gone", *extra)
        try:
            send(broker.address, "gone", b"first", 0)
            wait_for(lambda: "0:first" in out.read_text(), what="tail -f to print a record")
            admin.delete_topic("gone")
            _, err = proc.communicate(timeout=30)  # before: ran on silently
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1
    assert err.startswith("error: ") and "'gone' was deleted" in err and err.count("\n") == 1


def test_tail_f_follows_partitions_added_meanwhile(broker, tmp_path):
    with Admin(broker.address) as admin:
        admin.create_topic("grows", 1)
        out = tmp_path / "out.txt"
        proc = follow(broker.address, out, "grows")
        try:
            send(broker.address, "grows", b"old", 0)
            wait_for(lambda: "0:old" in out.read_text(), what="tail -f to print a record")
            admin.add_partitions("grows", 3)
            send(broker.address, "grows", b"new", 2)
            wait_for(lambda: "2:new" in out.read_text(), what="the new partition's record")
            assert proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(20)
