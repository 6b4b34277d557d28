"""``logstream bench produce|consume``: a built-in load generator that prints its setup next
to its results (like kafka-producer-perf-test or ``nats bench``)."""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from typing import Any

import click

from logstream.cli import params
from logstream.cli.context import app
from logstream.cli.output import human_bytes, human_count


@click.group(
    epilog="""\b
Examples:
  logstream bench produce bench --records 200000 --record-size 100 --partitions 3
  logstream bench produce bench --acks flushed --linger-ms 0
  logstream bench consume bench --records 200000
"""
)
def bench() -> None:
    """Measure produce and consume throughput against a broker."""


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def _report(setup: dict[str, Any], results: dict[str, Any], output: str | None) -> None:
    mode = output or params.default_output(sys.stdout)
    if mode in ("json", "jsonl"):
        click.echo(json.dumps({"setup": setup, "results": results}))
        return
    left = [f"{k}: {v}" for k, v in setup.items()]
    right = [f"{k}: {v}" for k, v in results.items()]
    width = max(len(s) for s in left) + 4
    click.echo("SETUP".ljust(width) + "RESULTS")
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        click.echo((a.ljust(width) + b).rstrip())


OUTPUT = click.option("-o", "--output", type=click.Choice(params.OUTPUT_MODES), default=None)


@bench.command(
    name="produce",
    epilog="""\b
Examples:
  logstream bench produce bench --records 200000 --record-size 100 --partitions 3
  logstream bench produce bench --acks flushed --linger-ms 0 --compression zstd -o json
""",
)
@click.argument("topic")
@click.option("--records", "-n", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--record-size", "-s", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--keys", type=click.IntRange(min=0), default=0, help="Distinct keys (0: keyless).")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=1,
    help="Partitions when the topic has to be created.",
)
@click.option("--acks", type=click.Choice(["none", "leader", "flushed"]), default="leader")
@click.option("--linger-ms", type=click.FloatRange(min=0), default=5.0)
@click.option("--batch-bytes", type=click.IntRange(min=1024), default=512 * 1024)
@click.option("--compression", type=click.Choice(["none", "zstd", "lz4"]), default="none")
@OUTPUT
def bench_produce(
    topic: str,
    records: int,
    record_size: int,
    keys: int,
    partitions: int,
    acks: str,
    linger_ms: float,
    batch_bytes: int,
    compression: str,
    output: str | None,
) -> None:
    """Send --records records of --record-size bytes to TOPIC as fast as possible."""
    from logstream.errors import TopicAlreadyExistsError

    ctx = app()
    try:
        ctx.admin().create_topic(topic, partitions)
    except TopicAlreadyExistsError:
        pass
    parts = len(ctx.admin().describe_topic(topic).partitions)
    payload = os.urandom(record_size // 2 + 1).hex()[:record_size].encode()
    key_list = [f"key-{i}".encode() for i in range(keys)] if keys else None
    producer = ctx.producer(
        acks=acks,
        linger_ms=linger_ms,
        batch_bytes=batch_bytes,
        compression=None if compression == "none" else compression,
    )
    latencies: list[float] = []
    lock = threading.Lock()

    def track(sent_at: float) -> Any:
        def done(_: Any) -> None:
            with lock:
                latencies.append(time.perf_counter() - sent_at)

        return done

    futures = []
    start = time.perf_counter()
    try:
        for i in range(records):
            key = key_list[i % keys] if key_list else None
            fut = producer.send(topic, value=payload, key=key)
            if i % 100 == 0:
                fut.add_done_callback(track(time.perf_counter()))
                futures.append(fut)
        producer.flush()
        for fut in futures:
            fut.result()
    finally:
        producer.close()
    elapsed = time.perf_counter() - start
    lat = sorted(latencies)
    setup = {
        "broker": ctx.broker,
        "topic": f"{topic} ({parts} partitions)",
        "records": records,
        "record size": f"{record_size} B",
        "keys": keys or "none",
        "acks": acks,
        "linger": f"{linger_ms} ms",
        "batch": human_bytes(batch_bytes),
        "compression": compression,
        "python": platform.python_version(),
    }
    results = {
        "elapsed": f"{elapsed:.2f} s",
        "records/s": human_count(records / elapsed),
        "throughput": f"{human_bytes(records * record_size / elapsed)}/s",
        "latency p50": f"{_percentile(lat, 0.5) * 1000:.1f} ms",
        "latency p99": f"{_percentile(lat, 0.99) * 1000:.1f} ms",
        "latency max": f"{(lat[-1] if lat else 0) * 1000:.1f} ms",
    }
    _report(setup, results, output)


@bench.command(
    name="consume",
    epilog="""\b
Examples:
  logstream bench consume bench --records 200000
  logstream bench consume bench -o json
""",
)
@click.argument("topic")
@click.option(
    "--records",
    "-n",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after N records (default: everything up to the end at start).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    help="Give up after this many seconds.",
)
@OUTPUT
def bench_consume(topic: str, records: int | None, timeout: float, output: str | None) -> None:
    """Read TOPIC from the beginning as fast as possible (columnar poll_batch)."""
    from logstream.client import Consumer
    from logstream.types import TopicPartition

    ctx = app()
    admin = ctx.admin()
    desc = admin.describe_topic(topic)
    tps = [TopicPartition(topic, p.partition) for p in desc.partitions]
    ends = admin.list_offsets({tp: "latest" for tp in tps})
    begins = admin.list_offsets({tp: "earliest" for tp in tps})
    available = sum(ends[tp] - begins[tp] for tp in tps)
    target = min(records, available) if records else available
    consumer = Consumer(ctx.broker, auto_offset_reset="earliest", **ctx.security)
    got = 0
    nbytes = 0
    start = time.perf_counter()
    first: float | None = None
    try:
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, begins[tp])
        while got < target and time.perf_counter() - start < timeout:
            cols = consumer.poll_batch(timeout=0.5)
            if len(cols) and first is None:
                first = time.perf_counter() - start
            got += len(cols)
            nbytes += sum(len(v) for v in cols.values() if v is not None)
    finally:
        consumer.close()
    elapsed = time.perf_counter() - start
    setup = {
        "broker": ctx.broker,
        "topic": f"{topic} ({len(tps)} partitions)",
        "records": target,
        "python": platform.python_version(),
    }
    results = {
        "read": got,
        "elapsed": f"{elapsed:.2f} s",
        "records/s": human_count(got / elapsed if elapsed else 0),
        "throughput": f"{human_bytes(nbytes / elapsed if elapsed else 0)}/s",
        "first record": f"{(first or 0) * 1000:.1f} ms",
    }
    _report(setup, results, output)
    if got < target:
        from logstream.cli.lazy_group import fail

        raise fail(f"read only {got} of {target} records within {timeout} s")
