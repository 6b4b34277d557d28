"""Thousands of open streams against one broker: are unary calls still fast, what does an
idle stream cost, and what do big concurrent requests do to the broker's memory?

    python benchmarks/bench_many_streams.py [--streams 5000] [--no-write]

A broker subprocess. A holder process (``grpc.aio`` client, one coroutine per stream, spread
over several channels) opens the streams in four kinds, a quarter each:

- idle producers: a ProduceStream that sent one request, got its answer, then sends nothing;
- idle subscribers: a Subscribe caught up with its partition;
- slow readers: a Subscribe from offset 0 of a topic holding ``BACKLOG_MB`` that read one
  message and then stop reading;
- stalled writers: a ProduceStream that sent ``STALLED_WRITER_REQUESTS`` requests and
  never reads an answer after the first.

With all of them open, this process times ``UNARY_CALLS`` ListTopics and Produce calls one
after another (p50 / p99 / max) and reads the broker's anonymous RSS (the heap, not the
page cache of mapped segments) before and after opening the streams. Last, 16 threads each
send one 60 MiB Produce request at once and the broker's peak RSS is sampled.
Results go to RESULTS.md (section ``streams``) and docs/decisions/0019-server-model.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

STREAMS_PER_CHANNEL = 250
UNARY_CALLS = 200
BACKLOG_MB = 8
STALLED_WRITER_REQUESTS = 300
OPEN_BATCH = 250
BIG_REQUESTS = 16
BIG_REQUEST_BYTES = 60 << 20


def _rss_anon(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def _produce_request(topic: str, value: bytes = b"x") -> Any:
    from logstream.codec import encode_batch
    from logstream.protocol import log_pb2

    return log_pb2.ProduceRequest(
        partitions=[log_pb2.PartitionProduceData(topic=topic, batches=[encode_batch([value])])]
    )


async def _hold(address: str, streams: int, ready: Any, stop: Any) -> None:
    import grpc

    from logstream.protocol import log_pb2, log_pb2_grpc

    channels = [
        grpc.aio.insecure_channel(address)
        for _ in range(max(1, -(-streams // STREAMS_PER_CHANNEL)))
    ]
    stubs = [log_pb2_grpc.LogStub(c) for c in channels]
    quiet = asyncio.Event()
    calls: list[Any] = []
    opened: list[Any] = []

    async def idle_requests() -> Any:
        yield _produce_request("idle")
        await quiet.wait()

    async def stalled_requests() -> Any:
        for _ in range(STALLED_WRITER_REQUESTS):
            yield _produce_request("stalled")
        await quiet.wait()

    def sub(topic: str) -> Any:
        return log_pb2.SubscribeRequest(
            partitions=[
                log_pb2.FetchPartition(topic=topic, partition=0, offset=0, max_bytes=64 << 10)
            ]
        )

    quarter = streams // 4
    results: list[Any] = []
    for i in range(streams):
        stub = stubs[i % len(stubs)]
        kind = min(i // max(quarter, 1), 3)
        if kind == 0:
            call = stub.ProduceStream(idle_requests())
        elif kind == 1:
            call = stub.Subscribe(sub("idle"))
        elif kind == 2:
            call = stub.Subscribe(sub("backlog"))
        else:
            call = stub.ProduceStream(stalled_requests())
        calls.append(call)
        opened.append(call.read())
        if len(opened) == OPEN_BATCH or i == streams - 1:
            # a burst of thousands of new calls at once gets some CANCELLED by gRPC; a
            # client that opens them in batches does not
            batch = asyncio.gather(*opened, return_exceptions=True)
            results.extend(await asyncio.wait_for(batch, 120))
            opened = []
    errors = [repr(r)[:200] for r in results if isinstance(r, BaseException)]
    ready.send({"open": len(calls) - len(errors), "failed": len(errors), "errors": errors[:3]})
    await asyncio.get_running_loop().run_in_executor(None, stop.recv)
    quiet.set()
    for call in calls:
        call.cancel()
    for channel in channels:
        await channel.close()


def _holder(address: str, streams: int, ready: Any, stop: Any) -> None:
    asyncio.run(_hold(address, streams, ready, stop))


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_quiet(pid: int, limit_s: float = 120.0) -> float:
    """Wait until the broker uses < 5% of a core over 0.5 s (the stalled writers have
    filled their windows); returns how long that took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        before = _cpu_s(pid)
        time.sleep(0.5)
        if _cpu_s(pid) - before < 0.025:
            break
    return time.monotonic() - t0


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def _unary_latencies(address: str) -> dict[str, list[float]]:
    import grpc

    from logstream.protocol import admin_pb2, admin_pb2_grpc, log_pb2_grpc

    channel = grpc.insecure_channel(address)
    admin, log = admin_pb2_grpc.AdminStub(channel), log_pb2_grpc.LogStub(channel)
    out: dict[str, list[float]] = {"ListTopics": [], "Produce": []}
    for _ in range(UNARY_CALLS):
        t0 = time.perf_counter()
        admin.ListTopics(admin_pb2.ListTopicsRequest(), timeout=10)
        out["ListTopics"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        log.Produce(_produce_request("unary"), timeout=10)
        out["Produce"].append(time.perf_counter() - t0)
    channel.close()
    return out


def _big_requests(address: str, pid: int) -> tuple[int, dict[str, int]]:
    """Peak anonymous RSS while BIG_REQUESTS threads send one huge Produce each."""
    import grpc

    from logstream.protocol import log_pb2, log_pb2_grpc

    payload = b"\0" * BIG_REQUEST_BYTES
    request = log_pb2.ProduceRequest(
        partitions=[log_pb2.PartitionProduceData(topic="unary", batches=[payload])]
    )
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def send() -> None:
        channel = grpc.insecure_channel(
            address, options=[("grpc.max_send_message_length", 64 << 20)]
        )
        try:
            log_pb2_grpc.LogStub(channel).Produce(request, timeout=60)
            key = "OK"
        except grpc.RpcError as err:
            key = err.code().name  # type: ignore[attr-defined]
        finally:
            channel.close()
        with lock:
            outcomes[key] = outcomes.get(key, 0) + 1

    threads = [threading.Thread(target=send) for _ in range(BIG_REQUESTS)]
    peak = _rss_anon(pid)
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, _rss_anon(pid))
        time.sleep(0.01)
    return peak, outcomes


def run(streams: int = 5000) -> str:
    from common import machine_line

    from logstream.client import Admin, Producer
    from logstream.testing.broker import BrokerProcess

    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerProcess(Path(tmp) / "data", log_level="WARNING").start()
        try:
            admin = Admin(broker.address)
            for topic in ("idle", "backlog", "stalled", "unary"):
                admin.create_topic(topic, partitions=1)
            admin.close()
            producer = Producer(broker.address)
            producer.send("idle", b"x")
            for _ in range(BACKLOG_MB * 16):
                producer.send("backlog", b"b" * (64 << 10))
            producer.flush()
            producer.close()
            base_rss = _rss_anon(broker.pid)
            alone = _unary_latencies(broker.address)

            ctx = mp.get_context("spawn")
            ready_r, ready_w = ctx.Pipe(duplex=False)
            stop_r, stop_w = ctx.Pipe(duplex=False)
            holder = ctx.Process(target=_holder, args=(broker.address, streams, ready_w, stop_r))
            t0 = time.monotonic()
            holder.start()
            status = ready_r.recv()
            for error in status["errors"]:
                print("stream failed to open:", error, file=sys.stderr)
            open_s = time.monotonic() - t0
            quiet_s = _wait_quiet(broker.pid)
            held_rss = _rss_anon(broker.pid)
            loaded = _unary_latencies(broker.address)
            stop_w.send("stop")
            holder.join(60)
            big_peak, big_outcomes = _big_requests(broker.address, broker.pid)
        finally:
            broker.terminate()

    def lat(d: dict[str, list[float]], name: str) -> str:
        v = d[name]
        return f"{_pct(v, 0.5) * 1e3:.1f} / {_pct(v, 0.99) * 1e3:.1f} / {max(v) * 1e3:.1f} ms"

    per_stream = (held_rss - base_rss) / max(status["open"], 1)
    lines = [
        "## Many open streams (benchmarks/bench_many_streams.py)",
        "",
        machine_line(),
        "",
        f"{status['open']:,} streams open ({status['failed']} failed to open), a quarter each: "
        "idle ProduceStreams, idle Subscribes, Subscribes that stopped reading a "
        f"{BACKLOG_MB} MiB backlog, ProduceStreams that sent {STALLED_WRITER_REQUESTS} "
        "requests and never read their answers; "
        f"opened {OPEN_BATCH} at a time in {open_s:.1f} s; the broker was quiet "
        f"{quiet_s:.1f} s later.",
        "",
        "| unary call (p50 / p99 / max, sequential) | no streams | streams open |",
        "| --- | --- | --- |",
        f"| ListTopics | {lat(alone, 'ListTopics')} | {lat(loaded, 'ListTopics')} |",
        f"| Produce (1 record) | {lat(alone, 'Produce')} | {lat(loaded, 'Produce')} |",
        "",
        f"Broker anonymous RSS: {base_rss / 2**20:.0f} MiB before, "
        f"{held_rss / 2**20:.0f} MiB with the streams open: "
        f"{per_stream / 1024:.1f} KiB per stream.",
        "",
        f"{BIG_REQUESTS} concurrent {BIG_REQUEST_BYTES >> 20} MiB Produce requests: broker "
        f"anonymous RSS peak {big_peak / 2**20:.0f} MiB; outcomes "
        + ", ".join(f"{k} {v}" for k, v in sorted(big_outcomes.items()))
        + ".",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    section = run(args.streams)
    if "failed to open" in section and "(0 failed" not in section:
        print("some streams failed to open", file=sys.stderr)
    print(section)
    if not args.no_write:
        from common import write_section

        write_section("streams", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
