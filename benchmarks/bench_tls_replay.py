"""Replay through TLS against plaintext, interleaved: the issue-16 replay ratio and what it
costs on each side of the connection.

    python benchmarks/bench_tls_replay.py [--records 1000000] [--sizes 100,1024]
        [--rounds 6] [--modes plaintext,TLS,TLS + token + ACLs]
        [--experiments NAME[+NAME]] [--no-write]

``--records`` is the 100 B count; 1 KiB replays a fifth as many, as bench-peers does
(1,000,000 x 100 B and 200,000 x 1 KiB by default). For each record size, one broker
subprocess per mode (the set-ups of ``bench_security.py``: TLS with ``certs dev``
certificates, a token, allow rules for an ordinary user) is started and filled once with
the ``make bench-peers`` produce (``send_batch`` in chunks of 1,000 incompressible
payloads, ``linger_ms=5``, 512 KiB batches). All of them stay up while the topic is
replayed from offset 0 ``--rounds`` times, the modes alternating and their order reversed
every other round, so that load which drifts on a shared machine reaches every mode alike.

Each replay runs in a fresh process, as in bench-peers: the timed part is ``assign`` and
``poll_batch`` until the end offset, so it includes the connection, the TLS handshake and
the first answer. The child reports its wall time and its own CPU time over that part
(all threads, gRPC's included) and each thread's CPU; the broker's CPU comes from its
threads' ``/proc/PID/task/*/schedstat`` (``benchmarks/thread_cpu.py``). The first table
gives the median rate, the median of the per-round ratios to plaintext (the issue-16
target is 0.85) and the median CPU per record of client and broker; the second splits the
CPU by thread (the consumer's fetcher and main threads, gRPC's threads, the broker's event
loop and the rest) and says whether the replay was CPU-bound or held back by one thread
(decision 0046).

``--experiments`` adds a mode: TLS with gRPC core experiments switched on in both
processes (``GRPC_EXPERIMENTS``), to A/B gRPC's own TLS options without rebuilding it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import thread_cpu  # noqa: E402
from benchmarks.bench_security import _setup  # noqa: E402
from benchmarks.peers.run import call  # noqa: E402
from benchmarks.peers.servers import warm_page_cache  # noqa: E402
from benchmarks.peers.workload import payloads  # noqa: E402
from logstream.client import Admin  # noqa: E402
from logstream.testing.broker import BrokerProcess  # noqa: E402

TOPIC = "bench"  # the one topic bench_security's ACL rules allow
CHUNK = 1_000
MODES = ("plaintext", "TLS", "TLS + token + ACLs")
CALL_TIMEOUT_S = 300.0
TARGET = 0.85
MODULE = "benchmarks.bench_tls_replay"  # what the spawned children import


def produce_child(address: str, client: dict[str, str], n: int, size: int) -> float:
    """Fill ``TOPIC`` with ``n`` x ``size`` B as bench-peers does; returns seconds."""
    from logstream import Producer

    pool = payloads(size, n)
    chunks = [[pool[(i + j) % len(pool)] for j in range(CHUNK)] for i in range(0, n, CHUNK)]
    producer = Producer(address, linger_ms=5.0, batch_bytes=512 * 1024, **client)
    t0 = time.perf_counter()
    futures = [producer.send_batch(TOPIC, values) for values in chunks]
    producer.flush(timeout=CALL_TIMEOUT_S)
    for f in futures:
        f.result(timeout=60)
    seconds = time.perf_counter() - t0
    producer.close()
    return seconds


def replay_child(address: str, client: dict[str, str], n: int, size: int) -> dict[str, Any]:
    """Replay ``TOPIC`` from offset 0 with ``poll_batch`` (the bench-peers replay); the
    wall and CPU seconds of this process over the timed part, and its threads' CPU."""
    from logstream import Consumer

    consumer = Consumer(address, auto_offset_reset="earliest", **client)
    count = nbytes = 0
    # The CPU window holds the two thread snapshots (~0.3 ms), so the threads' parts never
    # exceed the whole; the wall time leaves them out.
    cpu0 = time.process_time()
    threads0 = thread_cpu.snapshot(os.getpid(), thread_cpu.python_thread_names())
    wall0 = time.perf_counter()
    deadline = wall0 + CALL_TIMEOUT_S
    consumer.assign([(TOPIC, 0)])
    while count < n and time.perf_counter() < deadline:
        cols = consumer.poll_batch(timeout=0.5, max_records=100_000)
        if cols:
            _buf, _starts, lengths = cols.value_buffer()
            count += len(cols)
            nbytes += int(np.maximum(lengths, 0).sum())
    wall = time.perf_counter() - wall0
    python_names = thread_cpu.python_thread_names()
    threads = thread_cpu.delta(threads0, thread_cpu.snapshot(os.getpid(), python_names))
    cpu = time.process_time() - cpu0
    consumer.close()
    if (count, nbytes) != (n, n * size):
        raise AssertionError(f"replay read {count} records, {nbytes} B of {n} x {size} B")
    parts = {"fetcher": 0, "main": 0, "gRPC": 0}
    for t in threads:
        if t.name == "logstream-consumer-fetcher":
            parts["fetcher"] += t.cpu_ns
        elif t.name == "MainThread":
            parts["main"] += t.cpu_ns
        elif t.name not in python_names.values():  # threads gRPC's C core started
            parts["gRPC"] += t.cpu_ns
    busiest = threads[0] if threads else thread_cpu.ThreadTimes("-", 0, 0)
    return {
        "wall": wall,
        "cpu": cpu,
        "parts": parts,
        "busiest": (f"client {busiest.name}", busiest.cpu_ns),
        "wait_ns": sum(t.wait_ns for t in threads),
    }


@dataclass
class Sample:
    rate: float  # records/s
    client_ns: float  # CPU per record
    broker_ns: float
    load: float  # 1-minute load average right after the replay
    wall_s: float = 0.0
    client_parts: dict[str, float] = field(default_factory=dict)  # ns/record by thread kind
    broker_top_ns: float = 0.0  # the broker's busiest thread (its event loop), ns/record
    busiest: str = ""  # the thread with the most CPU in either process
    busiest_share: float = 0.0  # its CPU / the replay's wall time
    waiting: float = 0.0  # both processes' threads' time runnable but without a CPU / wall

    @property
    def cores(self) -> float:
        """CPU of both processes / wall time: 2.0 is both cores busy the whole replay."""
        return (self.client_ns + self.broker_ns) * 1e-9 * self.rate


@dataclass
class ModeRun:
    broker: BrokerProcess
    client: dict[str, str]
    env: dict[str, str]
    samples: list[Sample] = field(default_factory=list)


def _mode_setup(
    mode: str, base: Path, experiments: str
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """(broker config, client keyword arguments, environment of both) of ``mode``."""
    if mode.startswith("TLS (gRPC "):
        config, client = _setup("TLS", base)
        env = {"GRPC_EXPERIMENTS": experiments.replace("+", ",")}
    else:
        config, client = _setup(mode, base)
        env = {}
    return config, {k: str(v) for k, v in client.items()}, env


def run_size(
    modes: list[str], n: int, size: int, rounds: int, experiments: str, log=print
) -> dict[str, list[Sample]]:
    """Start one broker per mode, fill each, replay ``rounds`` times interleaved."""
    runs: dict[str, ModeRun] = {}
    with contextlib.ExitStack() as stack:
        for mode in modes:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tlsr-")))
            config, client, env = _mode_setup(mode, base, experiments)
            broker = stack.enter_context(
                BrokerProcess(base / "data", log_level="WARNING", env=env, **config)
            )
            admin = Admin(broker.address, **client)
            admin.create_topic(TOPIC)
            admin.close()
            warm_page_cache()
            seconds = call(MODULE, "produce_child", (broker.address, client, n, size),
                           CALL_TIMEOUT_S, env)  # fmt: skip
            log(f"  {mode}: broker pid {broker.pid}, filled {n:,} x {size} B in {seconds:.1f} s")
            runs[mode] = ModeRun(broker, client, env)
        for rnd in range(rounds):
            for mode in modes if rnd % 2 == 0 else modes[::-1]:
                r = runs[mode]
                broker0 = thread_cpu.snapshot(r.broker.pid)
                out = call(MODULE, "replay_child", (r.broker.address, r.client, n, size),
                           CALL_TIMEOUT_S, r.env)  # fmt: skip
                s = _sample(n, out, thread_cpu.delta(broker0, thread_cpu.snapshot(r.broker.pid)))
                r.samples.append(s)
                log(
                    f"  round {rnd + 1} {size} B {mode:<20} {s.rate:>12,.0f} rec/s, CPU ns/rec "
                    f"client {s.client_ns:4.0f} broker {s.broker_ns:4.0f}, load {s.load:.1f}"
                )
    return {mode: r.samples for mode, r in runs.items()}


def _sample(n: int, out: dict[str, Any], broker: list[thread_cpu.ThreadTimes]) -> Sample:
    """One replay's figures: the child's report and the broker's threads over it."""
    broker_ns = sum(t.cpu_ns for t in broker)
    top = broker[0] if broker else thread_cpu.ThreadTimes("-", 0, 0)
    name, busiest_ns = out["busiest"]
    if top.cpu_ns > busiest_ns:  # Python threads keep the interpreter's OS name
        label = "event loop" if top.name.startswith("python") else top.name
        name, busiest_ns = f"broker {label}", top.cpu_ns
    return Sample(
        rate=n / out["wall"],
        client_ns=out["cpu"] / n * 1e9,
        broker_ns=broker_ns / n,
        load=os.getloadavg()[0],
        wall_s=out["wall"],
        client_parts={k: v / n for k, v in out["parts"].items()},
        broker_top_ns=top.cpu_ns / n,
        busiest=name,
        busiest_share=busiest_ns * 1e-9 / out["wall"],
        waiting=(out["wait_ns"] + sum(t.wait_ns for t in broker)) * 1e-9 / out["wall"],
    )


def records_for(n: int, size: int) -> int:
    """bench-peers' counts: ``n`` records of 100 B, a fifth as many of 1 KiB."""
    return n if size < 1024 else max(n // 5 // CHUNK, 1) * CHUNK


def paired_ratio(samples: list[Sample], plain: list[Sample]) -> float:
    """Median over rounds of this mode's rate / plaintext's rate in the same round."""
    return statistics.median(s.rate / p.rate for s, p in zip(samples, plain, strict=True))


def table(results: dict[int, dict[str, list[Sample]]], n: int, rounds: int) -> str:
    counts = " and ".join(f"{records_for(n, size):,} x {size} B" for size in results)
    lines = [
        f"`benchmarks/bench_tls_replay.py`: replay of {counts} with "
        f"`poll_batch`, a fresh client process per replay, {rounds} interleaved rounds "
        'against brokers that stay up; medians (min-max). "vs plaintext" is the median of '
        f"the per-round ratios (target >= {TARGET}).",
        "",
        "| size | mode | records/s | vs plaintext | CPU ns/record client | "
        "CPU ns/record broker | plaintext's CPU / this CPU | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, by_mode in results.items():
        plain = by_mode.get("plaintext")
        for mode, samples in by_mode.items():
            rates = [s.rate for s in samples]
            ratio = f"{paired_ratio(samples, plain):.2f}x" if plain else "-"
            loads = [s.load for s in samples]
            cpu = cpu_ns(samples)
            by_cpu = f"{cpu_ns(plain) / cpu:.2f}" if plain else "-"
            lines.append(
                f"| {size} B | {mode} | {statistics.median(rates):,.0f} "
                f"({min(rates):,.0f}-{max(rates):,.0f}) | {ratio} | "
                f"{statistics.median(s.client_ns for s in samples):,.0f} | "
                f"{statistics.median(s.broker_ns for s in samples):,.0f} | {by_cpu} | "
                f"{min(loads):.1f}-{max(loads):.1f} |"
            )
    lines += [
        "",
        "On two shared cores single rounds swing by more than TLS costs; the CPU both "
        "processes spend per record is the steadier figure, and its ratio to plaintext's "
        "is the rate ratio a CPU-bound replay would show.",
        "",
        *threads_table(results),
    ]
    return "\n".join(lines)


def threads_table(results: dict[int, dict[str, list[Sample]]]) -> list[str]:
    """Where the CPU goes, thread by thread (``/proc/PID/task/*/schedstat``), and whether
    one thread bounds the replay: medians over the rounds."""
    lines = [
        "Where the CPU goes (ns/record, medians). Cores busy: both processes' CPU / wall "
        "time (2.0: both cores the whole replay); waiting: the time their threads were "
        "runnable but had no CPU / wall time (other work on the machine, or more runnable "
        "threads than cores). Busiest thread: the single thread with "
        "the most CPU and its CPU / wall time (near 1.0: that thread is the serial "
        "bottleneck).",
        "",
        "| size | mode | cores busy | waiting | client fetcher thread | client main thread | "
        "client gRPC threads | broker event loop | broker other threads | busiest thread |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, by_mode in results.items():
        for mode, samples in by_mode.items():

            def med(f: Any, xs: list[Sample] = samples) -> float:
                return statistics.median(f(x) for x in xs)

            names = sorted({x.busiest for x in samples})
            lines.append(
                f"| {size} B | {mode} | {med(lambda x: x.cores):.2f} | "
                f"{med(lambda x: x.waiting):.2f} | "
                f"{med(lambda x: x.client_parts.get('fetcher', 0.0)):,.0f} | "
                f"{med(lambda x: x.client_parts.get('main', 0.0)):,.0f} | "
                f"{med(lambda x: x.client_parts.get('gRPC', 0.0)):,.0f} | "
                f"{med(lambda x: x.broker_top_ns):,.0f} | "
                f"{med(lambda x: x.broker_ns - x.broker_top_ns):,.0f} | "
                f"{' / '.join(names)}: {med(lambda x: x.busiest_share):.2f} |"
            )
    return lines


def cpu_ns(samples: list[Sample]) -> float:
    """Median CPU per record of client and broker together."""
    return statistics.median(s.client_ns + s.broker_ns for s in samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--sizes", default="100,1024")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--experiments", default="", help="gRPC experiments, joined by +")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    n = max(args.records // CHUNK, 1) * CHUNK
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.experiments:
        modes.append(f"TLS (gRPC experiments {args.experiments})")
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        results[size] = run_size(modes, records_for(n, size), size, args.rounds, args.experiments)
    section = table(results, n, args.rounds)
    print(section)
    if not args.no_write:
        from benchmarks.common import machine_line, write_section

        write_section(
            "tls-replay", f"## Replay through TLS (issue 16)\n\n{machine_line()}\n\n{section}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
