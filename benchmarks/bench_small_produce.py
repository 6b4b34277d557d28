"""Small-request produce: broker CPU per request, for A/B runs of two server builds.

    python benchmarks/bench_small_produce.py [--requests 20000] [--in-flight 64] [--runs 3]

A broker subprocess (``python -m logstream serve`` of whichever install runs this script)
and, in this process: one ProduceStream sending one-record (100 B) requests with up to
``--in-flight`` unanswered; unary one-record ``Produce`` calls one after another; then
``Producer.send`` of ``--records`` 100 B records (default client settings, so the client
batches them; reported per 1,000 records).

Reported per phase: the wall rate and the broker's CPU time per request, in total and by OS
thread name from /proc/<pid>/task/*/stat ("python" is every Python thread, "event_engine"
gRPC's C-core I/O threads). CPU per request is what to compare on a shared machine: the
load there moves wall rates by tens of percent between runs of the same code, CPU far less.
Run it with each build's interpreter, interleaved (docs/performance.md, "Server model").
Bounded: a fixed count per phase and ``TIME_LIMIT_S`` per phase.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TIME_LIMIT_S = 60.0
TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds by thread name (threads of one name summed) of process ``pid``."""
    out: dict[str, float] = defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name.rstrip("0123456789_-")] += (int(fields[11]) + int(fields[12])) / TICK
    return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def _request(topic: str) -> object:
    from logstream.codec.encode import encode_batch
    from logstream.protocol import common_pb2, log_pb2

    batch = encode_batch([b"x" * 100])
    return log_pb2.ProduceRequest(
        acks=common_pb2.ACKS_LEADER,
        timeout_ms=10_000,
        partitions=[log_pb2.PartitionProduceData(topic=topic, partition=0, batches=[batch])],
    )


def stream_phase(stub: object, request: object, count: int, in_flight: int) -> float:
    slots = threading.Semaphore(in_flight)
    deadline = time.monotonic() + TIME_LIMIT_S

    def requests() -> Iterator[object]:
        for _ in range(count):
            if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                return
            yield request

    t0 = time.perf_counter()
    got = 0
    for response in stub.ProduceStream(requests(), timeout=TIME_LIMIT_S):  # type: ignore[attr-defined]
        assert response.partitions[0].error_code == 0, response
        got += 1
        slots.release()
    assert got == count, f"{got} of {count} answered"
    return time.perf_counter() - t0


def unary_phase(stub: object, request: object, count: int) -> float:
    deadline = time.monotonic() + TIME_LIMIT_S
    t0 = time.perf_counter()
    for _ in range(count):
        stub.Produce(request, timeout=10)  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise RuntimeError("unary phase over its time limit")
    return time.perf_counter() - t0


def send_phase(address: str, topic: str, count: int) -> float:
    """``Producer.send`` of 100 B records (default settings: linger 5 ms, 5 in flight)."""
    from logstream import Producer

    producer = Producer(address)
    producer.send(topic, b"x" * 100).result(10)
    value = b"x" * 100
    deadline = time.monotonic() + TIME_LIMIT_S
    t0 = time.perf_counter()
    for _ in range(count):
        producer.send(topic, value)
    producer.flush(max(1.0, deadline - time.monotonic()))
    wall = time.perf_counter() - t0
    producer.close()
    return wall


def _fmt(label: str, n: int, wall: float, cpu: dict[str, float]) -> str:
    total = sum(cpu.values())
    parts = ", ".join(
        f"{k} {v / n * 1e6:.0f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v > 0
    )
    return f"{label}: {n / wall:,.0f} req/s, broker CPU {total / n * 1e6:.0f} us/req ({parts})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--unary", type=int, default=3_000)
    parser.add_argument("--records", type=int, default=300_000, help="Producer.send phase")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()

    from logstream import Admin
    from logstream.protocol import log_pb2_grpc
    from logstream.testing.broker import BrokerProcess

    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerProcess(Path(tmp) / "data", log_level="WARNING").start()
        try:
            print(f"broker pid {broker.pid}", file=sys.stderr, flush=True)
            admin = Admin(broker.address)
            admin.create_topic("small", partitions=1)
            admin.create_topic("send", partitions=4)
            admin.close()
            channel = grpc.insecure_channel(broker.address)
            stub = log_pb2_grpc.LogStub(channel)
            request = _request("small")
            stream_phase(stub, request, 500, args.in_flight)  # warm
            for _ in range(args.runs):
                c0 = thread_cpu(broker.pid)
                wall = stream_phase(stub, request, args.requests, args.in_flight)
                c1 = thread_cpu(broker.pid)
                print(_fmt("ProduceStream", args.requests, wall, _delta(c1, c0)), flush=True)
                wall = unary_phase(stub, request, args.unary)
                c2 = thread_cpu(broker.pid)
                print(_fmt("Produce unary", args.unary, wall, _delta(c2, c1)), flush=True)
                if args.records:
                    wall = send_phase(broker.address, "send", args.records)
                    c3 = thread_cpu(broker.pid)
                    print(
                        _fmt(
                            "Producer.send (per 1k records)",
                            args.records // 1000,
                            wall,
                            _delta(c3, c2),
                        ),
                        flush=True,
                    )
            channel.close()
        finally:
            broker.terminate()


if __name__ == "__main__":
    main()
