"""The Kafka listener next to the native gRPC path, in one run against one broker process.

    python benchmarks/bench_kafka.py            # prints the section and rewrites RESULTS.md
    python benchmarks/bench_kafka.py --no-write

Measured, 100 B records, keyless, 4 partitions:

- conversion: Kafka batch -> logstream batch (produce) and back (fetch), ns per record, for
  a batch of 1,000 records (best of 5, in this process);
- produce: confluent-kafka ``Producer.produce`` in a loop (``linger.ms=5``, acks=1) until
  ``flush()``; native ``Producer.send`` in a loop until ``flush()``; records/s;
- replay: a fresh consumer from offset 0 of every partition to the end (confluent-kafka
  ``consume(1000)``, native ``poll_batch``); records/s;
- latency: a producer process at 2,000 records/s for ~5 s (confluent-kafka ``linger.ms=0``;
  native ``linger_ms=0``) with the send time in each value, a consumer process computing
  receive - send: p50 / p99 in ms.

Each role runs in its own process. Bounded: at most ``MAX_RECORDS`` records and
``TIME_LIMIT_S`` seconds per phase.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

MAX_RECORDS = 1_000_000
TIME_LIMIT_S = 20.0
PARTITIONS = 4
SIZE = 100
LATENCY_RATE = 2_000
LATENCY_S = 5.0


# -- roles (child processes) -------------------------------------------------------------


def role_produce(client: str, address: str, topic: str) -> dict[str, float]:
    value = b"x" * SIZE
    sent = 0
    if client in ("kafka", "kafka-batch"):
        import confluent_kafka as ck

        p = ck.Producer(
            {
                "bootstrap.servers": address,
                "linger.ms": 5,
                "acks": 1,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 2_000_000,
            }
        )
        p.produce(topic, value)
        p.flush(10)
        # produce_batch: one call per 1,000 records, so the client's Python binding is not
        # what is measured (produce() costs ~1.4 us of client CPU a record by itself).
        chunk = [{"value": value} for _ in range(1000)]
        t0 = time.perf_counter()
        deadline = t0 + TIME_LIMIT_S
        while sent < MAX_RECORDS and time.perf_counter() < deadline:
            if client == "kafka-batch":
                try:
                    sent += p.produce_batch(topic, chunk)
                except BufferError:
                    p.poll(0.01)
                p.poll(0)
                continue
            for _ in range(1000):
                try:
                    p.produce(topic, value)
                except BufferError:
                    p.poll(0.01)
                    continue
                sent += 1
            p.poll(0)
        p.flush(60)
    else:
        from logstream import Producer

        n = Producer(address)
        n.send(topic, value).result(10)
        t0 = time.perf_counter()
        deadline = t0 + TIME_LIMIT_S
        while sent < MAX_RECORDS and time.perf_counter() < deadline:
            for _ in range(1000):
                n.send(topic, value)
            sent += 1000
        n.flush(60)
        n.close()
    return {"records": sent, "seconds": time.perf_counter() - t0}


def _stored(grpc: str, topic: str) -> int:
    """Records in the topic (what was acknowledged), from the log end offsets."""
    from logstream import Consumer, TopicPartition

    with Consumer(grpc) as c:
        ends = c.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    return sum(ends.values())


def role_replay(client: str, address: str, topic: str, expected: int) -> dict[str, float]:
    got = 0
    t0 = time.perf_counter()
    deadline = t0 + TIME_LIMIT_S * 3
    if client in ("kafka", "kafka-batch"):
        import confluent_kafka as ck

        from benchmarks.peers.kafka_adapter import REPLAY_CONSUMER

        c = ck.Consumer(
            {
                "bootstrap.servers": address,
                "group.id": "bench-unused",
                "enable.auto.commit": False,
                **REPLAY_CONSUMER,
            }
        )
        c.assign([ck.TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        while got < expected and time.perf_counter() < deadline:
            got += sum(1 for m in c.consume(1000, 0.5) if m.error() is None)
        c.close()
    else:
        from logstream import Consumer

        with Consumer(address, auto_offset_reset="earliest") as n:
            n.assign([(topic, p) for p in range(PARTITIONS)])
            while got < expected and time.perf_counter() < deadline:
                got += len(n.poll_batch(0.5))
    return {"records": got, "seconds": time.perf_counter() - t0}


def role_latency_consume(client: str, address: str, topic: str) -> dict[str, float]:
    import numpy as np

    want = int(LATENCY_RATE * LATENCY_S)
    lat: list[int] = []
    deadline = time.monotonic() + LATENCY_S + 30
    if client in ("kafka", "kafka-1", "kafka-batch"):
        import confluent_kafka as ck

        from benchmarks.peers.kafka_adapter import LATENCY_CONSUMER

        c = ck.Consumer(
            {
                "bootstrap.servers": address,
                "group.id": "bench-unused",
                "enable.auto.commit": False,
                **LATENCY_CONSUMER,
            }
        )
        c.assign([ck.TopicPartition(topic, 0, ck.OFFSET_END)])
        c.poll(1.0)
        print("ready", flush=True)
        while len(lat) < want and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                lat.append(time.time_ns() - struct.unpack_from("<q", msg.value())[0])
        c.close()
    else:
        from logstream import Consumer

        with Consumer(address, auto_offset_reset="latest") as n:
            n.assign([(topic, 0)])
            n.poll(1.0)
            print("ready", flush=True)
            while len(lat) < want and time.monotonic() < deadline:
                for r in n.poll(0.5):
                    lat.append(time.time_ns() - struct.unpack_from("<q", r.value)[0])
    ms = np.array(lat, dtype=np.float64) / 1e6
    return {
        "records": len(lat),
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }


def role_latency_produce(client: str, address: str, topic: str) -> dict[str, float]:
    pad = b"x" * (SIZE - 8)
    count = int(LATENCY_RATE * LATENCY_S)
    interval = 1.0 / LATENCY_RATE
    if client in ("kafka", "kafka-1", "kafka-batch"):
        import confluent_kafka as ck

        from benchmarks.peers.kafka_adapter import LATENCY_PRODUCER

        conf = {"bootstrap.servers": address, **LATENCY_PRODUCER}
        if client == "kafka-1":  # one request in flight: records queue up and batch
            conf["max.in.flight.requests.per.connection"] = 1
        p = ck.Producer(conf)
        start = time.perf_counter()
        for i in range(count):
            while time.perf_counter() < start + i * interval:
                pass
            p.produce(topic, struct.pack("<q", time.time_ns()) + pad, partition=0)
            p.poll(0)
        p.flush(30)
    else:
        from logstream import Producer

        n = Producer(address, linger_ms=0)
        start = time.perf_counter()
        for i in range(count):
            while time.perf_counter() < start + i * interval:
                pass
            n.send(topic, struct.pack("<q", time.time_ns()) + pad, partition=0)
        n.flush(30)
        n.close()
    return {"records": count}


ROLES = {
    "produce": role_produce,
    "replay": role_replay,
    "latency-consume": role_latency_consume,
    "latency-produce": role_latency_produce,
}


# -- driver ------------------------------------------------------------------------------


def _role(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "role", *args], stdout=subprocess.PIPE, text=True
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"role failed: {proc.args}")
    return json.loads(out.strip().splitlines()[-1])


def _start_broker(data_dir: str) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logstream",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(HERE.parent),
    )
    grpc = kafka = ""
    assert proc.stdout is not None
    while not (grpc and kafka):
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("broker did not start")
        if line.startswith("logstream broker listening on "):
            grpc = line.split()[4]
        elif line.startswith("logstream kafka listener on "):
            kafka = line.split()[4]
    return proc, grpc, kafka


def _conversion() -> tuple[float, float]:
    from aiokafka.record._crecords import DefaultRecordBatchBuilder

    from logstream.kafka.records import kafka_to_logstream, logstream_to_kafka

    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i in range(1000):
        builder.append(i, 1_700_000_000_000 + i, None, b"x" * SIZE, [])
    raw = bytes(builder.build())
    stored = kafka_to_logstream(raw)
    out = []
    for fn, arg in ((kafka_to_logstream, raw), (logstream_to_kafka, stored)):
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(20):
                fn(arg)  # type: ignore[operator]
            best = min(best, (time.perf_counter() - t0) / 20 / 1000 * 1e9)
        out.append(best)
    return out[0], out[1]


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(broker_pid: int, *args: str) -> dict[str, float]:
    """A role's result plus the broker's CPU seconds while it ran."""
    before = _cpu_s(broker_pid)
    out = _result(_role(*args))
    out["broker_cpu"] = _cpu_s(broker_pid) - before
    return out


def _latency(client: str, address: str, topic: str) -> dict[str, float]:
    consumer = _role("latency-consume", client, address, topic)
    assert consumer.stdout is not None
    consumer.stdout.readline()  # ready
    _result(_role("latency-produce", client, address, topic))
    return _result(consumer)


def run() -> str:
    from logstream.client.admin import Admin

    to_ls, to_kafka = _conversion()
    rows = []
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as data:
        broker, grpc, kafka = _start_broker(data)
        try:
            with Admin(grpc) as admin:
                for name in ("tp-kafka", "tp-kafka-batch", "tp-native", "lat-kafka",
                             "lat-native", "lat-kafka-1"):  # fmt: skip
                    admin.create_topic(name, partitions=PARTITIONS)
            for client, topic, address in (
                ("kafka", "tp-kafka", kafka),
                ("kafka-batch", "tp-kafka-batch", kafka),
                ("native", "tp-native", grpc),
            ):
                produced = _timed(broker.pid, "produce", client, address, topic)
                # What was acknowledged and stored, not what the client handed over: a
                # refused record must not count.
                total = _stored(grpc, topic)
                produced["records"] = total - 1  # the warm-up record
                replayed = _timed(broker.pid, "replay", client, address, topic, str(total))
                latency = None
                if client != "kafka-batch":  # the same consumer and producer as "kafka"
                    latency = _latency(client, address, f"lat-{client}")
                rows.append((client, produced, replayed, latency))
                loads.append(os.getloadavg()[0])
            extra = _latency("kafka-1", kafka, "lat-kafka-1")
        finally:
            broker.terminate()
            broker.wait(30)
    lines = [
        "## Kafka listener (`benchmarks/bench_kafka.py`)",
        "",
        f"One broker process; {SIZE} B records, {PARTITIONS} partitions; each client role in its",
        "own process. confluent-kafka talks to the Kafka listener, the native client to gRPC, in",
        "the same run. Produced records are counted from the log end offsets (what was stored),",
        "not from the client. Broker CPU: user + system time of the broker process during the",
        "role, per record. Latency: 2,000 records/s for 5 s, linger 0, receive - send.",
        "",
        "| path | produce records/s | broker CPU us/record | replay records/s "
        "| broker CPU us/record | latency p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = {
        "kafka": "confluent-kafka `produce()` -> Kafka listener",
        "kafka-batch": "confluent-kafka `produce_batch()` -> Kafka listener",
        "native": "native client -> gRPC",
    }
    for client, produced, replayed, latency in rows:
        lat = f"{latency['p50']:.2f} | {latency['p99']:.2f}" if latency else "| "
        lines.append(
            f"| {names[client]} | {produced['records'] / produced['seconds']:,.0f} "
            f"| {produced['broker_cpu'] / produced['records'] * 1e6:.2f} "
            f"| {replayed['records'] / replayed['seconds']:,.0f} "
            f"| {replayed['broker_cpu'] / replayed['records'] * 1e6:.2f} | {lat} |"
        )
    lines += [
        f"| confluent-kafka, max.in.flight=1 (latency only) | | | | | {extra['p50']:.2f} "
        f"| {extra['p99']:.2f} |",
        "",
        f"Load average during the run: {min(loads):.1f}-{max(loads):.1f} (2 cores, shared).",
        "",
        "Conversion at the listener's edge (1,000 x 100 B records per batch, no headers):",
        f"Kafka -> logstream {to_ls:,.0f} ns/record (produce), "
        f"logstream -> Kafka {to_kafka:,.0f} ns/record (fetch).",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "role":
        name, rest = argv[1], argv[2:]
        fn = ROLES[name]
        args: list[object] = list(rest)
        if name == "replay":
            args[-1] = int(rest[-1])
        print(json.dumps(fn(*args)), flush=True)  # type: ignore[operator]
        return 0
    section = run()
    print(section)
    if "--no-write" not in argv:
        from common import write_section

        write_section("kafka", section)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
