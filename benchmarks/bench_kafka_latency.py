"""End-to-end latency through the Kafka listener, as interleaved A/B pairs with broker CPU.

    python benchmarks/bench_kafka_latency.py [--pairs 3] [--seconds 5] [--rate 2000]
        [--base PATH]                   # A = the broker of another checkout (e.g. main)
        [--a-conf JSON] [--b-conf JSON] # or A/B of client settings on this tree's broker

The workload is bench-peers' Kafka latency row (benchmarks/peers/kafka_adapter.py: a
confluent-kafka producer process sending one 100 B record every 1/rate s with
``linger.ms=0``, a consumer polling as records arrive; receive - send per record). Each
pair runs A then B, each against a fresh broker; the order alternates between pairs so a
change in machine load hits both sides alike. Every run prints p50 / p99 / p99.9 in ms,
the producer's send -> delivery report time (where a backlog sits: before the append or
after it), the broker's CPU time per record (user + system, from /proc, the whole
process) and the 1-minute load average, because on a shared machine the wall-clock
figures alone mislead.

A conf JSON is ``{"producer": {...}, "consumer": {...}}`` (librdkafka settings).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import kafka_adapter, servers  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def one_run(
    label: str, root: Path | None, conf: dict, rate: float, seconds: float, run_no: int
) -> dict[str, float]:
    srv = servers.logstream_kafka(root=root)
    acks_to = srv.workdir / "acks.json"
    try:
        kafka_adapter.create_topic(srv.addr, "warm")  # imports and first calls off the clock
        before = cpu_s(srv.pid)
        res = kafka_adapter.latency(
            srv.addr,
            f"lat{run_no}",
            rate,
            seconds,
            100,
            producer_conf=conf.get("producer"),
            consumer_conf=conf.get("consumer"),
            acks_to=str(acks_to),
        )
        used = cpu_s(srv.pid) - before
        acks = json.loads(acks_to.read_text())
    finally:
        srv.stop()
    row = {
        "p50": res.extra["p50_ms"],
        "p99": res.extra["p99_ms"],
        "p999": res.extra["p999_ms"],
        "ack_p50": acks["ack_p50_ms"],
        "ack_p99": acks["ack_p99_ms"],
        "cpu_us": used / res.records * 1e6,
        "load": os.getloadavg()[0],
    }
    print(f"{label}: {_describe(row)}", flush=True)
    return row


def _describe(row: dict[str, float]) -> str:
    return (
        f"end to end p50 {row['p50']:.3f} p99 {row['p99']:.3f} p99.9 {row['p999']:.3f} ms; "
        f"produce acked p50 {row['ack_p50']:.3f} p99 {row['ack_p99']:.3f} ms; "
        f"broker CPU {row['cpu_us']:.0f} us/record; load {row['load']:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--base", type=Path, default=None, help="A's tree (default: this one)")
    ap.add_argument("--a-conf", default="{}")
    ap.add_argument("--b-conf", default="{}")
    args = ap.parse_args(argv)
    sides = {
        "A": (args.base, json.loads(args.a_conf)),
        "B": (None, json.loads(args.b_conf)),
    }
    rows: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for i in range(args.pairs):
        order = ("A", "B") if i % 2 == 0 else ("B", "A")
        for side in order:
            root, conf = sides[side]
            rows[side].append(one_run(side, root, conf, args.rate, args.seconds, i))
    for side, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"median {side}: {_describe(med)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
