"""End to end on loopback: a producer process and a consumer process against a broker
subprocess.

    python benchmarks/bench_e2e.py            # prints the section and rewrites RESULTS.md
    python benchmarks/bench_e2e.py --no-write
    python benchmarks/bench_e2e.py --latency-only   # the latency lines only; writes nothing

Measured, for 100 B and 1 KiB records:

- produce: one process calling ``Producer.send`` in a loop (keyless, default settings),
  records/s and MB/s from the first send to the end of ``flush()``; also ``send_batch``
  (columnar) and the client CPU per record (process CPU time / records: robust to noisy
  neighbours on a shared machine);
- replay: a fresh consumer process reading everything from offset 0, with ``poll_batch``
  (columnar, no per-record objects) and with ``poll`` (one ``Record`` per record, each read
  once by a ``for`` loop, as an application handling records does);
- latency: a producer at 2,000 records/s for ~5 s (``linger_ms=0``) with the send time in
  each value; the consumer computes receive - send: p50 / p99 / p99.9, once iterating
  (``for record in consumer``: the loop's thread reads the stream) and once with ``poll``
  (the prefetch thread reads it and hands records over).

Bounded: at most ``MAX_RECORDS`` records and ``TIME_LIMIT_S`` seconds per phase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

MAX_RECORDS = {100: 2_000_000, 1024: 400_000}
TIME_LIMIT_S = 20.0
PARTITIONS = 4


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- roles (run in child processes) ----------------------------------------------------------


def role_produce(address: str, topic: str, size: int, count: int, mode: str) -> dict[str, float]:
    from logstream import Producer

    value = b"x" * size
    p = Producer(address)
    p.send(topic, value).result(10)  # metadata + connection warm
    sent = 0
    cpu0, t0 = _cpu(), time.perf_counter()
    deadline = t0 + TIME_LIMIT_S
    if mode == "send":
        send = p.send
        while sent < count and time.perf_counter() < deadline:
            for _ in range(10_000):
                send(topic, value)
            sent += 10_000
    else:
        chunk = [value] * 10_000
        while sent < count and time.perf_counter() < deadline:
            p.send_batch(topic, chunk)
            sent += len(chunk)
    p.flush()
    wall = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    p.close()
    return {"records": sent + 1, "seconds": wall, "cpu": cpu}


def role_replay(address: str, topic: str, total: int, mode: str) -> dict[str, float]:
    from logstream import Consumer, TopicPartition

    c = Consumer(address, auto_offset_reset="earliest")
    c.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    got = 0
    cpu0, t0 = _cpu(), time.perf_counter()
    deadline = t0 + TIME_LIMIT_S
    while got < total and time.perf_counter() < deadline:
        if mode == "poll_batch":
            got += len(c.poll_batch(1.0, max_records=1_000_000))
        else:
            for _record in c.poll(1.0, max_records=100_000):  # every Record reaches the loop
                got += 1
    wall = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    c.close()
    return {"records": got, "seconds": wall, "cpu": cpu}


def role_latency_consume(address: str, topic: str, expect: int, mode: str) -> dict[str, object]:
    import threading

    from logstream import Consumer, TopicPartition

    c = Consumer(address, auto_offset_reset="latest", fetch_max_wait_ms=500)
    c.assign([TopicPartition(topic, 0)])
    c.position(TopicPartition(topic, 0))
    print("ready", flush=True)
    lat: list[float] = []
    if mode == "iterate":
        timer = threading.Timer(TIME_LIMIT_S, c.close)  # bounded even if records go missing
        timer.start()
        for r in c:
            lat.append((time.time_ns() - int(r.value[:20])) / 1e6)  # type: ignore[index]
            if len(lat) >= expect:
                break
        timer.cancel()
    else:
        deadline = time.monotonic() + TIME_LIMIT_S
        while len(lat) < expect and time.monotonic() < deadline:
            for r in c.poll(0.5):
                now = time.time_ns()
                lat.append((now - int(r.value[:20])) / 1e6)  # type: ignore[index]
    c.close()
    return {"latencies_ms": lat}


def role_latency_produce(address: str, topic: str, rate: int, seconds: float) -> dict[str, float]:
    from logstream import Producer

    p = Producer(address, linger_ms=0)
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        p.send(topic, b"%020d" % time.time_ns() + b"x" * 80, partition=0)
    p.flush()
    p.close()
    return {"records": n}


ROLES = {
    "produce": role_produce,
    "replay": role_replay,
    "latency_consume": role_latency_consume,
    "latency_produce": role_latency_produce,
}


def _child(*args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    return subprocess.Popen(
        [sys.executable, __file__, "--role", *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = proc.communicate(timeout=TIME_LIMIT_S * 3)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}): {out[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


# -- the run ------------------------------------------------------------------------------------


def _broker_cpu(pid: int) -> float:
    """CPU seconds of process ``pid``, all threads (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(latency_only: bool = False) -> str:
    from common import machine_line

    from logstream import Admin
    from logstream.testing.broker import BrokerProcess

    rows: list[str] = []
    lat_line = ""
    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerProcess(Path(tmp) / "data", log_level="WARNING").start()
        try:
            admin = Admin(broker.address)
            for size in () if latency_only else (100, 1024):
                count = MAX_RECORDS[size]
                for mode in ("send", "send_batch"):
                    topic = f"bench-{size}-{mode}"
                    admin.create_topic(topic, partitions=PARTITIONS)
                    prod = _result(_child("produce", broker.address, topic, size, count, mode))
                    n, secs, cpu = prod["records"], prod["seconds"], prod["cpu"]
                    assert isinstance(n, int | float) and isinstance(secs, float)
                    assert isinstance(cpu, float)
                    rows.append(
                        f"| {size} B | produce `{mode}` | {n / secs / 1e6:.2f} M | "
                        f"{n * size / secs / 1e6:.0f} | {cpu / n * 1e9:.0f} ns |"
                    )
                    if mode == "send":
                        for rmode in ("poll_batch", "poll"):
                            rep = _result(_child("replay", broker.address, topic, int(n), rmode))
                            rn, rs, rc = rep["records"], rep["seconds"], rep["cpu"]
                            assert isinstance(rn, int) and isinstance(rs, float)
                            assert isinstance(rc, float)
                            rows.append(
                                f"| {size} B | replay `{rmode}` | {rn / rs / 1e6:.2f} M | "
                                f"{rn * size / rs / 1e6:.0f} | {rc / max(rn, 1) * 1e9:.0f} ns |"
                            )
            rate, seconds = 2_000, 5.0
            lat_lines = []
            for how in ("iterate", "poll"):
                topic = f"bench-latency-{how}"
                admin.create_topic(topic, partitions=1)
                n = int(rate * seconds)
                consumer = _child("latency_consume", broker.address, topic, n, how)
                assert consumer.stdout is not None
                consumer.stdout.readline()  # "ready": positioned at the log end
                cpu0 = _broker_cpu(broker.pid)
                _result(_child("latency_produce", broker.address, topic, rate, seconds))
                lat = _result(consumer)["latencies_ms"]
                cpu = _broker_cpu(broker.pid) - cpu0
                assert isinstance(lat, list)
                what = "`for record in consumer`" if how == "iterate" else "`poll()`"
                lat_lines.append(
                    f"- consumer {what}: p50 {_pct(lat, 0.5):.2f} ms, "
                    f"p99 {_pct(lat, 0.99):.2f} ms, p99.9 {_pct(lat, 0.999):.2f} ms, "
                    f"max {max(lat):.2f} ms ({len(lat):,} records; broker CPU "
                    f"{cpu / n * 1e6:.0f} us/record)"
                )
            lat_line = "\n".join(
                [
                    f"End-to-end latency at {rate:,} records/s for {seconds:.0f} s (100 B, "
                    "`linger_ms=0`, acks=leader):",
                    "",
                    *lat_lines,
                ]
            )
            admin.close()
        finally:
            broker.terminate()
    return "\n".join(
        [
            "## End to end (client <-> broker on loopback)",
            "",
            f"Machine: {machine_line()}",
            "",
            f"Broker subprocess, {PARTITIONS} partitions, producer and consumer in their own "
            "processes, default client settings (linger 5 ms, 512 KiB batches, idempotent, "
            "acks=leader). Client CPU = the client process's CPU time per record (the broker "
            "runs on the same cores, so wall-clock rates also measure the broker).",
            "",
            "| record | phase | records/s | MB/s | client CPU/record |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            lat_line,
        ]
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--role":
        role, *rest = sys.argv[2:]
        fn = ROLES[role]
        conv = [int(a) if a.isdigit() else a for a in rest]
        if role == "latency_produce":
            conv[-1] = float(rest[-1])
        print(json.dumps(fn(*conv)))  # type: ignore[operator]
        sys.exit(0)
    only_latency = "--latency-only" in sys.argv
    section = run(latency_only=only_latency)
    print(section)
    if "--no-write" not in sys.argv and not only_latency:
        from common import write_section

        write_section("e2e", section)
