"""The reply paths weighed in docs/decisions/0028-request-reply.md, measured on one broker.

    python benchmarks/bench_reply_paths.py [--records 1000] [--rate 500] [--rounds 2]

1. What a per-requester reply topic costs to set up and tear down: ``create_topic`` +
   ``delete_topic`` of a 1-partition topic, N times (ms each).
2. The reply leg alone (responder -> broker -> requester), one record at a time at a steady
   rate, two ways, interleaved A/B per round:
   - **log**: produce to a 1-partition topic, read by a ``Subscribe`` stream on it (what a
     shared reply topic or a per-requester topic would do: append to a segment, then push);
   - **inbox**: produce to an in-memory inbox, pushed to its open stream.
   Latency is send -> receive (``time.monotonic_ns`` stamped in the value); the broker's CPU
   time per record comes from /proc (the broker runs in its own process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import servers  # noqa: E402
from benchmarks.peers.workload import latency_summary, wait_until  # noqa: E402

STAMP = struct.Struct("<q")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def create_delete(addr: str, n: int) -> tuple[float, float]:
    from logstream import Admin

    created, deleted = [], []
    with Admin(addr) as admin:
        for i in range(n):
            t0 = time.perf_counter()
            admin.create_topic(f"replies-{i}", partitions=1)
            t1 = time.perf_counter()
            admin.delete_topic(f"replies-{i}")
            created.append(t1 - t0)
            deleted.append(time.perf_counter() - t1)
    return statistics.median(created) * 1e3, statistics.median(deleted) * 1e3


def one_way(addr: str, pid: int, topic: str, records: int, rate: float) -> dict[str, float]:
    """Send ``records`` stamped values to partition 0 of ``topic``; read them on a raw
    Subscribe stream; latency and broker CPU per record."""
    from logstream import Producer
    from logstream.client.transport import Transport
    from logstream.codec import iter_batches
    from logstream.protocol import log_pb2

    transport = Transport(addr)
    got: list[int] = []
    opened = threading.Event()
    call = transport.subscribe(
        log_pb2.SubscribeRequest(
            partitions=[log_pb2.FetchPartition(topic=topic, partition=0, offset=0)],
            heartbeat_ms=200,
        )
    )

    def read() -> None:
        for resp in call:
            opened.set()
            now = time.monotonic_ns()
            for part in resp.partitions:
                for batch in iter_batches(part.records):
                    for i in range(len(batch)):
                        got.append(now - STAMP.unpack_from(batch.value(i) or b"")[0])
            if len(got) >= records:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    opened.wait(10)  # an inbox says so at once; a topic stream after its first heartbeat
    with Producer(transport, linger_ms=0, idempotence=False) as p:
        p.send(topic, STAMP.pack(time.monotonic_ns()), partition=0).result(10)  # warm
        deadline = time.monotonic() + 10
        while len(got) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        got.clear()
        cpu0 = cpu_seconds(pid)
        t0 = time.monotonic_ns()
        period = int(1e9 / rate)
        for i in range(records):
            wait_until(t0 + i * period)
            p.send(topic, STAMP.pack(time.monotonic_ns()), partition=0)
        p.flush(30)
        reader.join(30)
        cpu = cpu_seconds(pid) - cpu0
    call.cancel()
    transport.close()
    out = latency_summary(got)
    out["broker_us"] = cpu / max(len(got), 1) * 1e6
    out["received"] = len(got)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--creates", type=int, default=20)
    args = ap.parse_args(argv)
    from logstream import Admin
    from logstream.protocol.request_reply import new_inbox

    srv = servers.logstream_broker()
    try:
        c, d = create_delete(srv.addr, args.creates)
        print(
            f"per-requester topic: create {c:.1f} ms, delete {d:.1f} ms (medians of "
            f"{args.creates}); load {os.getloadavg()[0]:.2f}"
        )
        print("| path | round | p50 ms | p99 ms | max ms | broker CPU us/record | load |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for rnd in range(args.rounds):
            topic = f"replylog{rnd}"
            with Admin(srv.addr) as admin:
                admin.create_topic(topic, partitions=1)
            for path, name in (("log", topic), ("inbox", new_inbox())):
                r = one_way(srv.addr, srv.pid, name, args.records, args.rate)
                print(
                    f"| {path} | {rnd} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                    f"{r['max_ms']:.3f} | {r['broker_us']:.0f} | {os.getloadavg()[0]:.2f} |",
                    flush=True,
                )
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
