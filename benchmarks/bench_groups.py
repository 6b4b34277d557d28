"""Consumer groups: rebalance time and consumption pauses, and group-consume throughput.

    python benchmarks/bench_groups.py [--no-write]

1. A group of 4 members consumes 32 partitions while a producer writes to all of them at a
   steady rate. A 5th member joins, later one member leaves (graceful close). For each
   change: the rebalance time (from the change until every member owns exactly its target
   and the group is Stable) and, on the members that keep partitions, the longest gap
   between deliveries of a kept partition during the rebalance, next to the same figure in
   steady state before it (the baseline: "no pause" means the two are alike).
2. Replay of a prepared topic: one consumer in a group (subscribe, auto-commit every
   second) versus plain replay (assign all partitions, no group), as a ratio.

Everything runs in one process against an in-process broker on loopback.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, write_section

from logstream.client import Consumer, Producer
from logstream.errors import GroupIdNotFoundError
from logstream.testing.broker import run_broker
from logstream.types import TopicPartition

PARTITIONS = 32
HEARTBEAT_MS = 500
RATE_PER_PARTITION = 50  # records/s while measuring rebalances


class Member:
    def __init__(self, address: str, name: str) -> None:
        self.name = name
        self.arrivals: dict[int, list[float]] = defaultdict(list)
        self.c = Consumer(
            address,
            group="bench",
            auto_offset_reset="latest",
            session_timeout_ms=10_000,
            fetch_max_wait_ms=50,
            auto_commit_interval_ms=1000,
        )
        self.c.subscribe(["live"])
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            recs = self.c.poll(timeout=0.05)
            now = time.monotonic()
            for p in {r.partition for r in recs}:
                self.arrivals[p].append(now)

    def owned(self) -> set[int]:
        return {tp.partition for tp in self.c.assignment()}

    def close(self) -> None:
        self.stop.set()
        self.t.join(5)
        self.c.close()


def _max_gap(times: list[float], lo: float, hi: float) -> float:
    inside = [t for t in times if lo <= t <= hi]
    if len(inside) < 2:
        return float("inf")
    edges = [lo, *inside, hi]
    return max(b - a for a, b in itertools.pairwise(edges))


def _wait_stable(coordinator: object, members: list[Member], timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            d = coordinator.describe_group("bench")  # type: ignore[attr-defined]
        except GroupIdNotFoundError:  # nobody joined yet
            time.sleep(0.01)
            continue
        owned = [m.owned() for m in members]
        if (
            d.state == "Stable"
            and len(d.members) == len(members)
            and sum(len(o) for o in owned) == PARTITIONS
            and set().union(*owned) == set(range(PARTITIONS))
        ):
            return time.monotonic()
        time.sleep(0.005)
    raise RuntimeError("group did not settle")


def _pauses(members: list[Member], kept: dict[str, set[int]], t0: float, t1: float) -> tuple:
    """(worst gap during [t0, t1 + 0.5], worst gap in the 3 s of steady state before t0)."""
    during, before = 0.0, 0.0
    for m in members:
        for p in kept.get(m.name, set()):
            during = max(during, _max_gap(m.arrivals[p], t0, t1 + 0.5))
            before = max(before, _max_gap(m.arrivals[p], t0 - 3.0, t0))
    return during, before


def _rebalances(address: str, coordinator: object) -> list[str]:
    stop = threading.Event()

    def produce() -> None:
        with Producer(address, linger_ms=2) as p:
            i = 0
            tick = 1.0 / RATE_PER_PARTITION
            while not stop.is_set():
                for part in range(PARTITIONS):
                    p.send("live", b"x" * 100, partition=part)
                i += 1
                time.sleep(tick)

    prod = threading.Thread(target=produce, daemon=True)
    prod.start()
    members = [Member(address, f"m{i}") for i in range(4)]
    rows = []
    try:
        _wait_stable(coordinator, members)
        time.sleep(4.0)
        # -- join
        before = {m.name: m.owned() for m in members}
        t0 = time.monotonic()
        newcomer = Member(address, "m4")
        members.append(newcomer)
        t1 = _wait_stable(coordinator, members)
        time.sleep(1.0)
        kept = {m.name: before[m.name] & m.owned() for m in members[:4]}
        moved = sum(len(before[n] - kept[n]) for n in kept)
        during, steady = _pauses(members[:4], kept, t0, t1)
        rows.append(("a 5th member joins", t1 - t0, moved, during, steady))
        time.sleep(3.0)
        # -- leave
        leaver = members.pop(0)
        released = len(leaver.owned())
        before = {m.name: m.owned() for m in members}
        t0 = time.monotonic()
        leaver.close()
        t1 = _wait_stable(coordinator, members)
        time.sleep(1.0)
        kept = {m.name: before[m.name] & m.owned() for m in members}
        during, steady = _pauses(members, kept, t0, t1)
        rows.append(("a member leaves (close)", t1 - t0, released, during, steady))
    finally:
        stop.set()
        for m in members:
            m.close()
        prod.join(5)
    out = []
    for what, took, moved, during, steady in rows:
        out.append(
            f"| {what} | {took * 1000:.0f} ms | {moved} | {during * 1000:.0f} ms | "
            f"{steady * 1000:.0f} ms |"
        )
    return out


def _throughput(address: str, records: int) -> tuple[float, float]:
    with Producer(address, linger_ms=5) as p:
        per = records // PARTITIONS
        for part in range(PARTITIONS):
            p.send_batch("replay", [b"v" * 100] * per, partition=part)
        p.flush()
    total = per * PARTITIONS

    def consume(c: Consumer) -> float:
        t = time.perf_counter()
        n = 0
        while n < total:
            n += len(c.poll_batch(timeout=1.0))
            if time.perf_counter() - t > 120:
                raise RuntimeError(f"replay stalled at {n} of {total} records")
        return total / (time.perf_counter() - t)

    plain = group = 0.0
    for attempt in range(2):  # alternate the modes, keep the best of each
        with Consumer(address, auto_offset_reset="earliest", fetch_max_wait_ms=50) as c:
            c.assign([TopicPartition("replay", i) for i in range(PARTITIONS)])
            plain = max(plain, consume(c))
        with Consumer(
            address,
            group=f"replayers-{attempt}",
            auto_offset_reset="earliest",
            auto_commit_interval_ms=1000,
            fetch_max_wait_ms=50,
        ) as c:
            c.subscribe(["replay"])
            group = max(group, consume(c))
    return plain, group


def run() -> str:
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_broker(Path(tmp) / "data", group_heartbeat_interval_ms=HEARTBEAT_MS) as b,
    ):
        b.broker.manager.create_topic("live", PARTITIONS)
        b.broker.manager.create_topic("replay", PARTITIONS)
        rows = _rebalances(b.address, b.broker.coordinator)
        plain, group = _throughput(b.address, 640_000)
    return "\n".join(
        [
            "## Consumer groups",
            "",
            f"Machine: {machine_line()}",
            "",
            f"Rebalances: 4 members on {PARTITIONS} partitions, producer at "
            f"{RATE_PER_PARTITION} records/s per partition, heartbeat interval {HEARTBEAT_MS} ms "
            "(50 ms while a member reconciles), members and broker in one process. "
            "*Rebalance time*: from the change until the group is Stable with every partition "
            "owned. *Pause*: the longest gap between deliveries of a partition its member keeps, "
            "during the rebalance (+0.5 s), next to the same figure over 3 s of steady state "
            "just before (the baseline).",
            "",
            "| change | rebalance time | partitions moved | longest gap on kept partitions "
            "| steady-state gap (baseline) |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Replay of 640,000 records of 100 B on 32 partitions by one consumer, "
            "`poll_batch`, best of 2 alternating runs:",
            "",
            "| mode | records/s | ratio to plain replay |",
            "| --- | --- | --- |",
            f"| plain replay (assign, no group) | {plain:,.0f} | 1.00 |",
            f"| group member (subscribe, auto-commit every 1 s) | {group:,.0f} | "
            f"{group / plain:.2f} |",
        ]
    )


if __name__ == "__main__":
    section = run()
    print(section)
    if "--no-write" not in sys.argv:
        write_section("groups", section)
