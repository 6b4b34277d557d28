"""Worker processes sharing a queue group: fair sharing, a worker killed with leases, the
broker killed under acking workers (real processes, real kill -9)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from queue_helpers import WORKER, admin, make_topic

from logstream import Producer, QueueConsumer
from logstream.testing.broker import BrokerProcess
from logstream.testing.wait import wait_for


def spawn(address: str, group: str, mode: str, out: Path, stop: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), address, group, mode, str(out), str(stop)],
        cwd=str(WORKER.parent),
    )


def lines(path: Path, tag: str) -> list[list[str]]:
    if not path.exists():
        return []
    return [ln.split() for ln in path.read_text().splitlines() if ln.startswith(tag + " ")]


def produce(address: str, topic: str, count: int, partitions: int) -> None:
    with Producer(address) as p:
        for i in range(count):
            p.send(topic, value=f"task-{i}".encode(), partition=i % partitions)
        p.flush()


def test_eight_workers_share_20000_tasks_each_acked_once(
    qbroker: BrokerProcess, name: str, tmp_path: Path
) -> None:
    make_topic(qbroker.address, name, 2, 0)
    ga = admin(qbroker.address)
    ga.create_queue_group(name, topics=[name])
    stop = tmp_path / "stop"
    outs = [tmp_path / f"w{i}.log" for i in range(8)]
    procs = [spawn(qbroker.address, name, "ack", o, stop) for o in outs]
    try:
        wait_for(lambda: len(ga.describe_queue_group(name).members) == 8, 60, "8 members")
        started = time.monotonic()
        produce(qbroker.address, name, 20_000, 2)
        wait_for(
            lambda: ga.describe_queue_group(name).total.acknowledged == 20_000, 60, "all acked"
        )
        elapsed = time.monotonic() - started
        stop.touch()
        for p in procs:
            assert p.wait(30) == 0
    finally:
        for p in procs:
            p.kill()
    confirmed = [(c[1], c[2]) for o in outs for c in lines(o, "C")]
    assert len(confirmed) == 20_000 and len(set(confirmed)) == 20_000
    shares = [len(lines(o, "C")) for o in outs]
    assert all(s > 0 for s in shares), shares
    assert elapsed < 60


def test_worker_killed_holding_leases_its_records_go_to_another(
    qbroker: BrokerProcess, name: str, tmp_path: Path
) -> None:
    make_topic(qbroker.address, name, 1, 50)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=2_000)
    out = tmp_path / "hold.log"
    proc = spawn(qbroker.address, name, "hold", out, tmp_path / "stop")
    try:
        wait_for(lambda: "READY" in out.read_text() if out.exists() else False, 30, "held")
        held = {int(h[2]) for h in lines(out, "H")}
        assert len(held) == 50
        proc.kill()
        killed_at = time.monotonic()
        proc.wait(10)
        with QueueConsumer(qbroker.address, group=name, max_records=50) as q:
            got: dict[int, int] = {}
            while len(got) < 50 and time.monotonic() - killed_at < 2.0 + 1.0:
                for m in q.poll(0.2):
                    got[m.offset] = m.delivery_count
                    m.ack()
            took = time.monotonic() - killed_at
            assert set(got) == held, f"{len(got)} of 50 back after {took:.2f}s"
            assert set(got.values()) == {2}
            assert q.commit() == []
    finally:
        proc.kill()


def test_broker_kill_under_acking_workers_loses_nothing_and_repeats_no_confirmed_ack(
    tmp_path: Path,
) -> None:
    group = topic = "crash-jobs"
    with BrokerProcess(tmp_path / "data", queue_tick_interval_ms=20) as broker:
        make_topic(broker.address, topic, 2, 4_000)
        ga = admin(broker.address)
        ga.create_queue_group(group, topics=[topic], lease_ms=3_000)
        stop = tmp_path / "stop"
        outs = [tmp_path / f"w{i}.log" for i in range(4)]
        procs = [spawn(broker.address, group, "ack", o, stop) for o in outs]
        try:
            wait_for(lambda: sum(len(lines(o, "C")) for o in outs) > 800, 60, "acks")
            broker.restart(kill=True)
            ga = admin(broker.address)
            wait_for(lambda: ga.describe_queue_group(group).total.acknowledged == 4_000, 60, "all")
            stop.touch()
            for p in procs:
                p.wait(30)
        finally:
            for p in procs:
                p.kill()
    confirmed: dict[tuple[str, str], float] = {}
    done: set[tuple[str, str]] = set()
    deliveries: list[tuple[tuple[str, str], float]] = []
    for o in outs:
        for c in lines(o, "C"):
            key = (c[1], c[2])
            assert key not in confirmed, f"{key} confirmed twice"
            confirmed[key] = float(c[3])
            done.add(key)
        done.update((f[1], f[2]) for f in lines(o, "F"))
        deliveries += [((d[1], d[2]), float(d[4])) for d in lines(o, "D")]
    assert len(done) == 4_000, "every task finished"
    late = [k for k, t in deliveries if k in confirmed and t > confirmed[k]]
    assert late == [], f"confirmed acks delivered again: {late[:5]}"
