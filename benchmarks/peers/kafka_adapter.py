"""logstream's Kafka listener driven by confluent-kafka (librdkafka): the same workload as
the other systems, against a broker started with ``--kafka-listen``.

Idiomatic batching: ``Producer.produce_batch`` of 1,000 records (``linger.ms=5``,
``acks=1``, no compression), delivery counted from the log end offsets after ``flush()``;
replay by a consumer assigned every partition from offset 0, ``consume(1000)`` pages,
with REPLAY_CONSUMER's settings (a prefetch queue that refills 10 ms after it was full, not
librdkafka's default 1 s); the group consumer subscribes with ``enable.auto.commit=false``,
the same settings, and commits each page asynchronously; latency ``produce()`` per
record with ``linger.ms=0`` in its own process, a consumer polling as records arrive (the
broker's long-poll is woken by the append), both with ``socket.nagle.disable``
(LATENCY_PRODUCER / LATENCY_CONSUMER).

The durable row: Kafka's ``acks=all`` maps to logstream's ``leader`` level (the listener has
no ``flushed`` level), so it is reported as not available rather than measured as durable.
"""

from __future__ import annotations

import time
from pathlib import Path

from .workload import (
    Result,
    Timer,
    check_alive,
    latency_summary,
    paced_schedule,
    payloads,
    reap,
    sent_ns,
    spawn,
    stamped,
    verify,
    wait_until,
)

SYSTEM = "logstream Kafka listener"
CHUNK = 1_000
PAGE = 1_000
IDLE_S = 5.0  # a reader stops after this long without a record once it has seen none missing


class NotAvailable(Exception):
    """A workload this path does not offer; the driver prints "not yet available"."""


def client_version() -> str:
    import confluent_kafka as ck

    return f"confluent-kafka {ck.version()[0]} (librdkafka {ck.libversion()[0]})"


def create_topic(addr: str, topic: str, partitions: int = 1) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": addr})
    admin.create_topics([NewTopic(topic, partitions)])[topic].result(30)


def stored(addr: str, topic: str, partitions: int = 1) -> int:
    """Records the broker acknowledged and stored (sum of the log end offsets)."""
    import confluent_kafka as ck

    c = ck.Consumer({"bootstrap.servers": addr, "group.id": "bench-watermarks"})
    try:
        return sum(
            c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=30)[1]
            for p in range(partitions)
        )
    finally:
        c.close()


def produce(addr: str, topic: str, n: int, size: int) -> Result:
    import confluent_kafka as ck

    create_topic(addr, topic)
    pool = payloads(size, n)
    npool = len(pool)
    chunks = [
        [{"value": pool[(start + i) % npool]} for i in range(min(CHUNK, n - start))]
        for start in range(0, n, CHUNK)
    ]
    p = ck.Producer(
        {
            "bootstrap.servers": addr,
            "linger.ms": 5,
            "acks": 1,
            "compression.type": "none",
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    p.list_topics(topic, timeout=30)  # metadata before the clock starts
    with Timer() as t:
        for chunk in chunks:
            while True:
                try:
                    p.produce_batch(topic, chunk)
                    break
                except BufferError:
                    p.poll(0.01)
            p.poll(0)
        left = p.flush(120)
    count = stored(addr, topic)
    if left or count != n:
        raise AssertionError(f"{SYSTEM} produce: {count} of {n} stored, {left} undelivered")
    return Result(SYSTEM, "produce", n, n * size, t.seconds)


def durable_produce(addr: str, topic: str, n: int, size: int) -> Result:
    raise NotAvailable(
        "fsync-acknowledged produce over Kafka is not in the listener yet: acks=all answers "
        "at logstream's leader level"
    )


# What a throughput-minded librdkafka user replaying history sets (docs/kafka-protocol.md,
# "Replay"). librdkafka stops fetching a partition once its prefetch queue holds
# queued.min.messages (100,000) records or queued.max.messages.kbytes, then waits
# fetch.queue.backoff.ms (default 1,000) before it looks again, even when the application
# drained the queue in 40 ms: whenever the broker outruns the Python consume loop (a fast
# host), a replay of 1,000,000 records waited 1-4 such seconds (354-541 k/s instead of
# ~2 M/s). fetch.max.bytes lets one fetch carry up to 50 MB across partitions.
REPLAY_CONSUMER = {"fetch.max.bytes": 52_428_800, "fetch.queue.backoff.ms": 10}


def _read(consumer, n: int, count_from: float) -> tuple[int, int]:
    count = nbytes = 0
    last = count_from
    while count < n and time.monotonic() - last < IDLE_S:
        page = consumer.consume(PAGE, 0.5)
        for m in page:
            if m.error() is None:
                count += 1
                nbytes += len(m.value())
        if page:
            last = time.monotonic()
    return count, nbytes


def replay(
    addr: str, topic: str, n: int, size: int, partitions: int = 1, conf: dict | None = None
) -> Result:
    """``conf`` is added to REPLAY_CONSUMER's settings (tests)."""
    import confluent_kafka as ck

    c = ck.Consumer(
        {
            "bootstrap.servers": addr,
            "group.id": "bench-replay",
            "enable.auto.commit": False,
            **REPLAY_CONSUMER,
            **(conf or {}),
        }
    )
    try:
        c.assign([ck.TopicPartition(topic, p, 0) for p in range(partitions)])
        with Timer() as t:
            count, nbytes = _read(c, n, time.monotonic())
    finally:
        c.close()
    verify(f"{SYSTEM} replay", n, n * size, count, nbytes)
    return Result(SYSTEM, "replay", count, nbytes, t.seconds)


def group_consume(addr: str, topic: str, n: int, size: int, group: str = "bench") -> Result:
    import confluent_kafka as ck

    c = ck.Consumer(
        {
            "bootstrap.servers": addr,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **REPLAY_CONSUMER,
        }
    )
    count = nbytes = 0
    try:
        c.subscribe([topic])
        with Timer() as t:
            last = time.monotonic() + 10  # the join and first assignment
            while count < n and time.monotonic() - last < IDLE_S:
                page = c.consume(PAGE, 0.5)
                good = [m for m in page if m.error() is None]
                count += len(good)
                nbytes += sum(len(m.value()) for m in good)
                if good:
                    c.commit(asynchronous=True)
                    last = time.monotonic()
            try:
                c.commit(asynchronous=False)
            except ck.KafkaException as exc:
                # _NO_OFFSET: the last page's asynchronous commit already covered every
                # position, so there is nothing left to commit
                if exc.args[0].code() != ck.KafkaError._NO_OFFSET:
                    raise
    finally:
        c.close()
    verify(f"{SYSTEM} group consume", n, n * size, count, nbytes)
    return Result(SYSTEM, "group consume", count, nbytes, t.seconds)


# What a latency-minded librdkafka user sets (docs/kafka-protocol.md, "Latency"): no
# linger, Nagle off on both sockets (redis-py, nats-py and gRPC set TCP_NODELAY themselves;
# librdkafka leaves Nagle on), a fetch that returns as soon as one byte is there. The
# long-poll's max wait does not add latency: the listener answers when the append lands.
LATENCY_PRODUCER = {"linger.ms": 0, "acks": 1, "socket.nagle.disable": True}
LATENCY_CONSUMER = {"fetch.wait.max.ms": 500, "fetch.min.bytes": 1, "socket.nagle.disable": True}


def _latency_producer(
    addr: str,
    topic: str,
    rate: float,
    seconds: float,
    size: int,
    conf: dict | None = None,
    acks_to: str | None = None,
) -> None:
    """``acks_to``: a file for the send -> delivery report times (JSON, ms quantiles)."""
    import confluent_kafka as ck

    p = ck.Producer({"bootstrap.servers": addr, **LATENCY_PRODUCER, **(conf or {})})
    p.list_topics(topic, timeout=30)
    n, period = paced_schedule(rate, seconds)
    acked: list[int] = []

    def delivered(err: object, msg: object) -> None:
        if err is None:
            acked.append(time.monotonic_ns() - sent_ns(msg.value()))  # type: ignore[attr-defined]

    extra = {"on_delivery": delivered} if acks_to else {}
    t0 = time.monotonic_ns() + 50_000_000
    for i in range(n):
        wait_until(t0 + i * period)
        p.produce(topic, stamped(i, size), partition=0, **extra)
        p.poll(0)
    p.flush(30)
    if acks_to:
        import json

        summary = latency_summary(acked)
        Path(acks_to).write_text(json.dumps({f"ack_{k}": v for k, v in summary.items()}))


def latency(
    addr: str,
    topic: str,
    rate: float,
    seconds: float,
    size: int,
    producer_conf: dict | None = None,
    consumer_conf: dict | None = None,
    acks_to: str | None = None,
) -> Result:
    """``producer_conf`` / ``consumer_conf`` override LATENCY_PRODUCER / LATENCY_CONSUMER
    (benchmarks/bench_kafka_latency.py compares settings with them); with ``acks_to`` the
    producer also writes its send -> delivery report times there (``ack_p50_ms``, ...)."""
    import confluent_kafka as ck

    create_topic(addr, topic)
    n, _ = paced_schedule(rate, seconds)
    c = ck.Consumer(
        {
            "bootstrap.servers": addr,
            "group.id": "bench-latency",
            "enable.auto.commit": False,
            **LATENCY_CONSUMER,
            **(consumer_conf or {}),
        }
    )
    lat: list[int] = []
    nbytes = 0
    try:
        c.assign([ck.TopicPartition(topic, 0, ck.OFFSET_END)])
        c.poll(1.0)  # connected and fetching before the producer starts
        proc = spawn(_latency_producer, (addr, topic, rate, seconds, size, producer_conf, acks_to))
        deadline = time.monotonic() + seconds + 30
        try:
            with Timer() as t:
                while len(lat) < n and time.monotonic() < deadline:
                    m = c.poll(0.5)
                    if m is None:
                        check_alive(proc, f"{SYSTEM} latency")
                        continue
                    if m.error() is None:
                        v = m.value()
                        lat.append(time.monotonic_ns() - sent_ns(v))
                        nbytes += len(v)
        finally:
            reap(proc)
    finally:
        c.close()
    verify(f"{SYSTEM} latency", n, n * size, len(lat), nbytes)
    res = Result(SYSTEM, "latency", len(lat), nbytes, t.seconds)
    res.extra.update(latency_summary(lat))
    return res
