"""logstream adapter (the Python client, ``from logstream import Producer, Consumer, Admin``).

Idiomatic batching: the batching producer (``linger_ms=5``, 512 KiB batches, pipelined
in-flight requests) fed through ``send_batch`` in chunks of 1,000 records (the same unit as
Redis's pipelines); replay with ``Consumer.poll_batch`` (columnar, the prefetching fetcher
keeps the next batches on the wire); the group consumes with ``subscribe`` and commits once per
page. Durable produce uses ``acks="flushed"`` (the broker acknowledges a batch only after the
segment is fsynced). Latency: the producer process calls ``send()`` per record with
``linger_ms=0``; we iterate the consumer (``for record in consumer``: the loop's own thread
reads the stream), and in a secondary row ``poll()`` (the prefetch thread hands records over).

A feature the client does not have yet raises :class:`NotAvailable`; the driver prints
"not yet available" in that row instead of a number.

The same functions drive the broker with TLS, a token and ACLs (system ``secure``): the
driver sets ``LOGSTREAM_TOKEN`` (read by every client) and ``LOGSTREAM_BENCH_CA`` (the dev
CA, passed as ``ca=`` by :func:`client_security`) in the worker process.
"""

from __future__ import annotations

import os
import time

import numpy as np

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

SYSTEM = "logstream"
CHUNK = 1_000
IDLE_S = 5.0


class NotAvailable(Exception):
    """The logstream client or broker does not offer this yet."""


def client_security() -> dict:
    """``ca=`` for a TLS broker (``LOGSTREAM_BENCH_CA``), else nothing; the token comes
    from ``LOGSTREAM_TOKEN`` inside the client."""
    ca = os.environ.get("LOGSTREAM_BENCH_CA")
    return {"ca": ca} if ca else {}


def client_version() -> str:
    import grpc

    import logstream

    return f"logstream client {logstream.__version__} (grpcio {grpc.__version__})"


def _tp(topic: str, partition: int = 0):
    from logstream import TopicPartition

    return TopicPartition(topic, partition)


def create_topic(addr: str, topic: str, partitions: int = 1) -> None:
    from logstream import Admin

    admin = Admin(addr, **client_security())
    try:
        admin.create_topic(topic, partitions=partitions)
    finally:
        admin.close()


def end_offsets(addr: str, topic: str, partitions: int = 1) -> dict:
    from logstream import Admin

    admin = Admin(addr, **client_security())
    try:
        return admin.list_offsets({_tp(topic, p): "latest" for p in range(partitions)})
    finally:
        admin.close()


def _producer(addr: str, acks: str, **kw):
    from logstream import Producer

    kw.setdefault("linger_ms", 5.0)
    kw.setdefault("batch_bytes", 512 * 1024)
    return Producer(addr, acks=acks, compression=None, **client_security(), **kw)


def _produce(addr: str, topic: str, n: int, size: int, acks: str, op: str) -> Result:
    create_topic(addr, topic)
    pool = payloads(size, n)
    npool = len(pool)
    chunks = [pool[i : i + CHUNK] for i in range(0, npool, CHUNK)]
    chunks = [c for c in chunks if len(c) == CHUNK] or [pool[:CHUNK]]
    futures = []
    p = _producer(addr, acks)
    try:
        with Timer() as t:
            sent = 0
            k = 0
            while sent < n:
                values = chunks[k % len(chunks)]
                if n - sent < len(values):
                    values = values[: n - sent]
                futures.append(p.send_batch(topic, values))
                sent += len(values)
                k += 1
            p.flush(timeout=300)
        for f in futures:
            f.result(timeout=60)  # raises the first failed record's error
    finally:
        p.close()
    end = end_offsets(addr, topic)[_tp(topic)]
    if end < n:
        raise AssertionError(f"{SYSTEM} {op}: log end offset {end} < {n}")
    return Result(SYSTEM, op, n, n * size, t.seconds)


def produce(addr: str, topic: str, n: int, size: int) -> Result:
    return _produce(addr, topic, n, size, "leader", "produce")


def durable_produce(addr: str, topic: str, n: int, size: int) -> Result:
    res = _produce(addr, topic, n, size, "flushed", "durable produce")
    res.extra["durability"] = "acks=flushed"
    return res


def produce_per_record(addr: str, topic: str, n: int, size: int) -> Result:
    """``send()`` once per record (the Kafka-style call) - a secondary row."""
    create_topic(addr, topic)
    pool = payloads(size, n)
    npool = len(pool)
    p = _producer(addr, "leader")
    try:
        send = p.send
        with Timer() as t:
            last = None
            for i in range(n):
                last = send(topic, pool[i % npool])
            p.flush(timeout=300)
        if last is not None:
            last.result(timeout=60)
    finally:
        p.close()
    end = end_offsets(addr, topic)[_tp(topic)]
    if end < n:
        raise AssertionError(f"{SYSTEM} produce per record: log end offset {end} < {n}")
    return Result(SYSTEM, "produce (send per record)", n, n * size, t.seconds)


def _drain_columns(consumer, ends: dict, idle: float = IDLE_S, on_page=None) -> tuple[int, int]:
    """poll_batch until every partition reached its end offset (read before the drain), or
    nothing arrived for ``idle`` s (a short read: ``verify()`` reports it)."""
    count = nbytes = 0
    target = sum(ends.values())
    last_progress = time.monotonic()
    while count < target:
        cols = consumer.poll_batch(timeout=0.5, max_records=100_000)
        if not cols:
            if time.monotonic() - last_progress > idle:
                break
            continue
        buf, _starts, lengths = cols.value_buffer()
        got = int(np.maximum(lengths, 0).sum())
        if len(buf) < got:
            raise AssertionError("value buffer shorter than the value lengths")
        count += len(cols)
        nbytes += got
        last_progress = time.monotonic()
        if on_page is not None:
            on_page(cols)
    return count, nbytes


def replay(addr: str, topic: str, n: int, size: int, partitions: int = 1) -> Result:
    from logstream import Consumer

    ends = end_offsets(addr, topic, partitions)
    c = Consumer(addr, auto_offset_reset="earliest", **client_security())
    try:
        with Timer() as t:
            c.assign(list(ends))
            count, nbytes = _drain_columns(c, ends)
    finally:
        c.close()
    verify(f"{SYSTEM} replay", n, n * size, count, nbytes)
    return Result(SYSTEM, "replay", count, nbytes, t.seconds)


def replay_per_record(addr: str, topic: str, n: int, size: int) -> Result:
    """``poll()`` returning Record tuples (the Kafka-style call) - a secondary row."""
    from logstream import Consumer

    target = end_offsets(addr, topic)[_tp(topic)]
    c = Consumer(addr, auto_offset_reset="earliest", **client_security())
    count = nbytes = 0
    try:
        with Timer() as t:
            c.assign([_tp(topic)])
            last_progress = time.monotonic()
            while count < target:
                records = c.poll(timeout=0.5, max_records=10_000)
                if not records:
                    if time.monotonic() - last_progress > IDLE_S:
                        break
                    continue
                for r in records:
                    nbytes += len(r.value)
                count += len(records)
                last_progress = time.monotonic()
    finally:
        c.close()
    verify(f"{SYSTEM} replay per record", n, n * size, count, nbytes)
    return Result(SYSTEM, "replay (poll per record)", count, nbytes, t.seconds)


def group_consume(addr: str, topic: str, n: int, size: int, group: str = "bench") -> Result:
    from logstream import Consumer, errors

    ends = end_offsets(addr, topic)
    try:
        c = Consumer(
            addr,
            group=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **client_security(),
        )
    except TypeError as e:  # pragma: no cover - depends on the client version
        raise NotAvailable(f"consumer groups are not in the client yet: {e}") from e
    try:
        try:
            c.subscribe([topic])
        except errors.InvalidRequestError as e:
            raise NotAvailable(f"consumer groups are not in the client yet: {e}") from e
        with Timer() as t:
            # one synchronous commit per page (<= 100,000 records), like one XACK per page
            count, nbytes = _drain_columns(c, ends, on_page=lambda _cols: c.commit())
        committed = c.committed(list(ends))
    finally:
        c.close()
    verify(f"{SYSTEM} group consume", n, n * size, count, nbytes)
    for tp, end in ends.items():
        got = committed.get(tp)
        off = getattr(got, "offset", got)
        if off != end:
            raise AssertionError(f"{SYSTEM} group consume: committed {off} for {tp}, end {end}")
    return Result(SYSTEM, "group consume", count, nbytes, t.seconds)


def _latency_producer(addr: str, topic: str, rate: float, seconds: float, size: int) -> None:
    p = _producer(addr, "leader", linger_ms=0.0)
    try:
        p.partitions_for(topic)  # metadata before the clock starts
        n, period = paced_schedule(rate, seconds)
        t0 = time.monotonic_ns() + 50_000_000
        for i in range(n):
            wait_until(t0 + i * period)
            p.send(topic, stamped(i, size))
        p.flush(timeout=60)
    finally:
        p.close()


def latency(addr: str, topic: str, rate: float, seconds: float, size: int) -> Result:
    """Records as they arrive through ``for record in consumer``."""
    return _latency(addr, topic, rate, seconds, size, iterate=True)


def latency_poll(addr: str, topic: str, rate: float, seconds: float, size: int) -> Result:
    """Records as they arrive through ``poll(timeout=1.0)`` (a secondary row)."""
    return _latency(addr, topic, rate, seconds, size, iterate=False)


def _latency(
    addr: str, topic: str, rate: float, seconds: float, size: int, *, iterate: bool
) -> Result:
    import threading

    from logstream import Consumer

    create_topic(addr, topic)
    n, _ = paced_schedule(rate, seconds)
    lat: list[int] = []
    nbytes = 0
    c = Consumer(addr, auto_offset_reset="earliest", fetch_max_wait_ms=500)
    c.assign([_tp(topic)])
    c.poll(timeout=0.2)  # position resolved, first long poll parked before the producer starts
    deadline = time.monotonic() + seconds + 30
    proc = spawn(_latency_producer, (addr, topic, rate, seconds, size))
    bound = threading.Timer(seconds + 30, c.close)  # iteration: bounded if records go missing
    try:
        with Timer() as t:
            if iterate:
                bound.start()
                for r in c:
                    lat.append(time.monotonic_ns() - sent_ns(r.value))
                    nbytes += len(r.value)
                    if len(lat) >= n:
                        break
                check_alive(proc, f"{SYSTEM} latency")
            while not iterate and len(lat) < n and time.monotonic() < deadline:
                records = c.poll(timeout=1.0, max_records=10_000)
                if not records:
                    check_alive(proc, f"{SYSTEM} latency")
                    continue
                now = time.monotonic_ns()
                for r in records:
                    lat.append(now - sent_ns(r.value))
                    nbytes += len(r.value)
    finally:
        bound.cancel()
        c.close()
        reap(proc)
    verify(f"{SYSTEM} latency", n, n * size, len(lat), nbytes)
    res = Result(SYSTEM, "latency", len(lat), nbytes, t.seconds)
    res.extra.update(latency_summary(lat))
    return res


# --------------------------------------------------------------------------- scale table

SCALE_SEGMENT_BYTES = 8 << 20  # many partitions: keep each preallocated active segment small


def scale_partitions(addr: str, topic: str, partitions: int, n: int, size: int) -> dict:
    """Produce ``n`` records spread evenly over ``partitions``, then fetch them all."""
    from logstream import Admin, Consumer

    admin = Admin(addr, **client_security())
    try:
        admin.create_topic(topic, partitions, {"segment_bytes": SCALE_SEGMENT_BYTES})
    finally:
        admin.close()
    pool = payloads(size, n)
    per = [n // partitions + (1 if p < n % partitions else 0) for p in range(partitions)]
    p = _producer(addr, "leader")
    futures = []
    try:
        with Timer() as tp:
            k = 0
            for part, count in enumerate(per):
                for lo in range(0, count, CHUNK):
                    m = min(CHUNK, count - lo)
                    start = k % max(1, len(pool) - m)
                    futures.append(p.send_batch(topic, pool[start : start + m], partition=part))
                    k += m
            p.flush(timeout=300)
        for f in futures:
            f.result(timeout=60)
    finally:
        p.close()
    ends = end_offsets(addr, topic, partitions)
    c = Consumer(addr, auto_offset_reset="earliest", **client_security())
    try:
        with Timer() as tf:
            c.assign(list(ends))
            count, nbytes = _drain_columns(c, ends)
    finally:
        c.close()
    verify(f"{SYSTEM} fetch over {partitions} partitions", n, n * size, count, nbytes)
    return {
        "partitions": partitions,
        "produce_rate": n / tp.seconds,
        "fetch_rate": n / tf.seconds,
    }


# One partition grown to 10^8 records: small records, produced in big columnar chunks.
GROWTH_CHUNK = 50_000  # records per send_batch: 2,000 calls for 10^8 records, not 100,000
GROWTH_BATCH_BYTES = 64 * 1024  # a fetch returns the whole batch holding the offset: keep
# it small (~2,000 records of 16 B), so "fetch one record" does not decode a 1 MiB batch
GROWTH_REQUEST_BYTES = 8 << 20  # many 64 KiB batches per produce request
GROWTH_BYTES_PER_RECORD = 48  # disk per record beyond the value, with margin (~16 B measured)
GROWTH_DISK_HEADROOM = 4 << 30  # leave this much free for everyone else on the machine
GROWTH_SAMPLE_BUDGET_S = 30.0  # at most this long sampling one checkpoint


def growth_disk_need(records: int, size: int) -> int:
    """Bytes the broker needs to hold ``records`` records of ``size`` bytes (an overestimate:
    record and batch headers, index entries, one preallocated active segment)."""
    return records * (size + GROWTH_BYTES_PER_RECORD) + (64 << 20)


def _growth_sample(
    addr: str, admin, tp, rng, t_first: int, t_last: int, records: int, samples: int
) -> dict:
    """Time ``samples`` timestamp lookups and single-record fetches at random offsets;
    stops early (and says how many it took) once GROWTH_SAMPLE_BUDGET_S has passed."""
    from logstream import Consumer

    from .workload import percentile

    stop = time.monotonic() + GROWTH_SAMPLE_BUDGET_S
    lookups: list[int] = []
    for _ in range(samples):
        if time.monotonic() > stop:
            break
        ts = rng.randint(t_first, t_last)
        t0 = time.perf_counter_ns()
        admin.list_offsets({tp: ts})
        lookups.append(time.perf_counter_ns() - t0)
    fetches: list[int] = []
    # A consumer only while sampling: an assigned one prefetches in the background, and
    # between checkpoints it would compete with the producer for the 2 cores.
    consumer = Consumer(addr, auto_offset_reset="earliest", max_partition_fetch_bytes=64 * 1024)
    try:
        consumer.assign([tp])
        for _ in range(samples):
            if time.monotonic() > stop:
                break
            off = rng.randrange(records)
            consumer.seek(tp, off)
            t0 = time.perf_counter_ns()
            got = consumer.poll(timeout=5.0, max_records=1)
            fetches.append(time.perf_counter_ns() - t0)
            if not got or got[0].offset != off:
                raise AssertionError(f"fetch at {off} returned {got[:1]}")
    finally:
        consumer.close()
    lookups.sort()
    fetches.sort()
    return {
        "lookup_ms": percentile(lookups, 50) / 1e6,
        "fetch_ms": percentile(fetches, 50) / 1e6,
        "fetch_p99_ms": percentile(fetches, 99) / 1e6,
        "samples": min(len(lookups), len(fetches)),
    }


def scale_growth(
    addr: str,
    topic: str,
    checkpoints: tuple[int, ...],
    size: int,
    samples: int,
    deadline_s: float = 180.0,
) -> list[dict]:
    """Grow one partition through ``checkpoints`` records of ``size`` bytes; at each, time
    random timestamp lookups (ListOffsets) and single-record fetches at random offsets.

    Bounded: checkpoints whose data would not fit on disk (with headroom) are skipped up
    front, and producing stops at the first checkpoint not reached within ``deadline_s``;
    a skipped checkpoint is a row with a ``skipped`` reason instead of numbers."""
    import random
    import shutil
    import tempfile

    from logstream import Admin

    rng = random.Random(42)
    # The broker is local and keeps its data under the temp dir (servers._workdir).
    free = shutil.disk_usage(tempfile.gettempdir()).free
    create_topic(addr, topic)
    pool = payloads(size, max(checkpoints))
    tp = _tp(topic)
    admin = Admin(addr, **client_security())
    p = _producer(
        addr,
        "leader",
        batch_bytes=GROWTH_BATCH_BYTES,
        max_request_bytes=GROWTH_REQUEST_BYTES,
    )
    rows: list[dict] = []
    produced = 0
    produce_s = 0.0
    t_start = time.monotonic()
    deadline = t_start + deadline_s
    t_first = time.time_ns() // 1_000_000
    skip: str | None = None
    try:
        for cp in sorted(checkpoints):
            need = growth_disk_need(cp, size)
            if skip is None and time.monotonic() > deadline:
                skip = f"growth deadline {deadline_s:g} s passed at {produced:,} records"
            if skip is None and need + GROWTH_DISK_HEADROOM > free:
                # each larger checkpoint lands here too, with its own numbers
                rows.append(
                    {
                        "records": cp,
                        "skipped": f"needs ~{need / 1e9:.1f} GB, {free / 1e9:.1f} GB free "
                        f"(keeping {GROWTH_DISK_HEADROOM >> 30} GiB spare)",
                    }
                )
                continue
            if skip is not None:
                rows.append({"records": cp, "skipped": skip})
                continue
            t0 = time.monotonic()
            futures = []
            while produced < cp and time.monotonic() <= deadline:
                m = min(GROWTH_CHUNK, cp - produced)
                start = produced % max(1, len(pool) - m)
                futures.append(p.send_batch(topic, pool[start : start + m]))
                produced += m
            p.flush(timeout=max(30.0, deadline - time.monotonic()))
            for f in futures:
                # exception(), not result(): result() builds metadata for every record
                # (0.7 s per 10^6 records, twice the cost of producing them)
                exc = f.exception(timeout=60)
                if exc is not None:
                    raise exc
            produce_s += time.monotonic() - t0
            if produced < cp:
                skip = f"growth deadline {deadline_s:g} s passed at {produced:,} records"
                rows.append({"records": cp, "skipped": skip})
                continue
            end = admin.list_offsets({tp: "latest"})[tp]
            if end != cp:
                raise AssertionError(f"{SYSTEM} growth: log end offset {end} != {cp}")
            t_last = time.time_ns() // 1_000_000
            row = {"records": cp}
            row.update(_growth_sample(addr, admin, tp, rng, t_first, t_last, cp, samples))
            part = admin.describe_topic(topic).partitions[0]
            row.update(
                log_bytes=part.size_bytes,
                segments=part.segment_count,
                batch_bytes=GROWTH_BATCH_BYTES,
                produce_s=produce_s,
                elapsed_s=time.monotonic() - t_start,
            )
            rows.append(row)
    finally:
        p.close()
        admin.close()
    return rows


def fill_partitions(addr: str, partitions: int, per_topic: int = 100) -> None:
    """Topics of ``per_topic`` partitions (1 MiB segments) totalling ``partitions``, with one
    record in each partition."""
    from logstream import Admin

    topics = []
    left = partitions
    i = 0
    while left > 0:
        k = min(per_topic, left)
        topics.append((f"fill{i:04d}", k, {"segment_bytes": 1 << 20}))
        left -= k
        i += 1
    admin = Admin(addr, **client_security())
    try:
        for lo in range(0, len(topics), 10):
            admin.create_topics(topics[lo : lo + 10])
    finally:
        admin.close()
    p = _producer(addr, "leader")
    try:
        for name, k, _cfg in topics:
            for part in range(k):
                p.send(name, b"x" * 100, partition=part)
        p.flush(timeout=300)
    finally:
        p.close()


def first_answer(addr: str) -> float:
    """Seconds from connecting to the first answered ListTopics."""
    from logstream import Admin

    t0 = time.perf_counter()
    admin = Admin(addr, **client_security())
    try:
        admin.list_topics()
    finally:
        admin.close()
    return time.perf_counter() - t0
