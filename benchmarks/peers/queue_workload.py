"""Work-queue consume with a per-message ack: logstream queue groups vs Redis Streams vs NATS
JetStream; and logstream's nack-redelivery and lease-expiry timing as distributions.

    python benchmarks/peers/queue_workload.py [--records 100000] [--workers 4] [--runs 1]
        [--systems logstream,redis,nats] [--page 100] [--timing] [--py-spy DIR]

Also a row of ``make bench-peers`` (run.py calls :func:`logstream_queue`, :func:`redis_queue`,
:func:`nats_queue` and :func:`logstream_timing` against the server it started).

Same machine, same run, each system on a fresh server in a temp dir (servers.py). N records
of 100 B are written first; then W worker processes (spawned, started and connected before
the clock starts) consume and acknowledge every record:

- logstream: a topic of 4 partitions, one queue group; each worker a ``QueueConsumer``
  (``max_records`` 100) calling ``msg.ack()`` per message (acks ride on the next fetch);
- Redis Streams: one stream, one consumer group; each worker ``XREADGROUP COUNT 100`` and
  one ``XACK`` of those ids (redis-py + hiredis);
- NATS JetStream: one stream, one durable pull consumer (explicit ack); each worker
  ``fetch(100)``, ``msg.ack()`` per message, then a flush (nats-py).

The clock starts once every worker is connected (logstream: joined; Redis: a PING
answered; NATS: subscribed) and stops when every record is acknowledged: logstream, once
the workers' counts (after each poll's acks were queued) reach N, the group's
acknowledged total as the broker reports it (asked only from then on, so the driver costs
the broker nothing while the workers run); Redis, the workers' counts after each XACK
answer; NATS, the workers' counts after each flush (the server has the acks). The worker
whose count reaches N wakes the driver (an event, no polling). Besides the rate: CPU time
per acknowledged record of the server process over the same window (every thread's
``/proc/PID/task/*/schedstat``, in ns: the 10 ms ticks of ``/proc/PID/stat`` are a tenth
of a 0.1 s run) and of the workers together (``time.process_time``), the figure to
compare on a loaded machine. Worker start-up (process spawn, imports, connecting,
joining) is outside both the clock and the CPU figures, for every system.

Timing (logstream only, :func:`logstream_timing`): a nacked record's redelivery lateness
(arrival minus nack time minus the delay asked for) and a lease-expiry takeover (a member
acquires and goes silent; another member's arrival minus acquire time minus the lease), as
p50 / p99 / max over a few hundred records.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import servers  # noqa: E402
from benchmarks.peers.workload import Result, latency_summary  # noqa: E402

SIZE = 100
PAGE = int(os.environ.get("LOGSTREAM_BENCH_QUEUE_PAGE", "100"))
"""Records per fetch for every system (``--page``; through the environment, so the spawned
workers see it too)."""
PARTITIONS = 4
PAGE_T = 20  # records per timing round
DONE_POLL_S = 0.002
"""How often the driver asks the logstream broker whether it has every ack, once the
workers' counts are full (a DescribeQueueGroup each: usually the first one says yes)."""
TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (10 ms ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def threads_cpu_s(pid: int) -> float:
    """CPU seconds of process ``pid``'s live threads so far, to the nanosecond (the sum of
    their ``schedstat`` run times; a thread that ended is not counted, so measure over a
    window in which the server starts and ends none: its thread pools are long-lived)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended while we looked
    return total / 1e9


# --------------------------------------------------------------------------- workers


def _count(acked: Any, n: int, full: Any, got: int) -> None:
    """Add ``got`` acknowledged records to the shared count; the worker that makes it
    reach ``n`` wakes the driver."""
    with acked.get_lock():
        acked.value += got
        if acked.value >= n:
            full.set()


def _ls_worker(
    addr: str,
    group: str,
    acked: Any,
    n: int,
    full: Any,
    cpu: Any,
    i: int,
    ready: Any,
    go: Any,
    stop: Any,
) -> None:
    from logstream import QueueConsumer

    q = QueueConsumer(addr, group=group, max_records=PAGE, max_wait_ms=100)
    ready.set()
    go.wait()
    c0 = time.process_time()
    while not stop.is_set():
        page = q.poll(0.1)
        for msg in page:
            msg.ack()
        if page:
            _count(acked, n, full, len(page))
    cpu[i] = time.process_time() - c0
    q.close()


def _redis_worker(
    addr: str, acked: Any, n: int, full: Any, cpu: Any, i: int, ready: Any, go: Any, stop: Any
) -> None:
    import redis

    host, port = addr.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    r.ping()  # connected before the clock starts, as the other systems' workers are
    ready.set()
    go.wait()
    c0 = time.process_time()
    while not stop.is_set():
        got = r.xreadgroup("g", f"c{i}", {"jobs": ">"}, count=PAGE, block=100)
        if not got:
            continue
        ids = [mid for mid, _ in got[0][1]]
        r.xack("jobs", "g", *ids)
        _count(acked, n, full, len(ids))
    cpu[i] = time.process_time() - c0


def _nats_worker(
    addr: str, acked: Any, n: int, full: Any, cpu: Any, i: int, ready: Any, go: Any, stop: Any
) -> None:
    import nats
    from nats.errors import TimeoutError as NatsTimeout

    async def main() -> None:
        nc = await nats.connect(f"nats://{addr}", max_reconnect_attempts=0)
        js = nc.jetstream()
        sub = await js.pull_subscribe("jobs", durable="workers", stream="JOBS")
        ready.set()
        while not go.is_set():
            await asyncio.sleep(0.005)
        c0 = time.process_time()
        while not stop.is_set():
            try:
                msgs = await sub.fetch(PAGE, timeout=0.1)
            except (TimeoutError, NatsTimeout):
                continue
            for m in msgs:
                await m.ack()
            await nc.flush()
            _count(acked, n, full, len(msgs))
        cpu[i] = time.process_time() - c0
        await nc.close()

    asyncio.run(main())


def _run_workers(
    target: Callable[..., None],
    args_for: Callable[[int], tuple],
    workers: int,
    full: Any,
    confirmed: Callable[[], bool],
    pid: int,
    timeout: float,
) -> tuple[float, float]:
    """Start ``workers`` processes, wait until each is connected, then run them until the
    count is full (``full`` set) and ``confirmed()``. Returns the seconds and the server
    CPU seconds (process ``pid``) from the start signal to then."""
    ctx = mp.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    readies = [ctx.Event() for _ in range(workers)]
    procs = [
        ctx.Process(target=target, args=(*args_for(i), readies[i], go, stop))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    for e in readies:
        e.wait(60)
    cpu0 = threads_cpu_s(pid)
    started = time.perf_counter()
    go.set()
    try:
        if not full.wait(timeout):
            raise TimeoutError("workload did not finish")
        while not confirmed():
            if time.perf_counter() - started > timeout:
                raise TimeoutError("workload did not finish")
            time.sleep(DONE_POLL_S)
        return time.perf_counter() - started, threads_cpu_s(pid) - cpu0
    finally:
        stop.set()
        for p in procs:
            p.join(20)
            if p.is_alive():
                p.kill()


def _result(system: str, n: int, size: int, seconds: float, server_cpu: float, cpu: Any) -> Result:
    res = Result(system, "queue", n, n * size, seconds)
    res.extra["server_cpu_us"] = server_cpu / n * 1e6
    res.extra["worker_cpu_us"] = sum(cpu[:]) / n * 1e6
    return res


# --------------------------------------------------------------------------- one system each


def logstream_queue(addr: str, pid: int, n: int, size: int = SIZE, workers: int = 4) -> Result:
    """Fill a 4-partition topic, then ``workers`` processes consume and ack all of it."""
    from logstream import Admin, GroupAdmin, Producer

    topic, group = f"jobs{time.monotonic_ns()}", f"workers{time.monotonic_ns()}"
    with Admin(addr) as a:
        a.create_topic(topic, partitions=PARTITIONS)
    with Producer(addr) as p:
        payload = b"x" * size
        for _ in range(n):
            p.send(topic, value=payload)
        p.flush()
    ga = GroupAdmin(addr)
    ga.create_queue_group(group, topics=[topic])
    ctx = mp.get_context("spawn")
    acked, full, cpu = ctx.Value("q", 0), ctx.Event(), ctx.Array("d", workers)

    def confirmed() -> bool:
        # The workers' counts are full (every record handed to msg.ack()); the broker's
        # word that it has every ack.
        return ga.describe_queue_group(group).total.acknowledged >= n

    seconds, server_cpu = _run_workers(
        _ls_worker,
        lambda i: (addr, group, acked, n, full, cpu, i),
        workers,
        full,
        confirmed,
        pid,
        600,
    )
    res = _result("logstream", n, size, seconds, server_cpu, cpu)
    d = ga.describe_queue_group(group).total
    if d.acknowledged != n or d.redelivered:
        raise AssertionError(f"acknowledged {d.acknowledged}, redelivered {d.redelivered}")
    return res


def redis_queue(addr: str, pid: int, n: int, size: int = SIZE, workers: int = 4) -> Result:
    import redis

    host, port = addr.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    r.delete("jobs")
    pipe = r.pipeline(transaction=False)
    payload = b"x" * size
    for i in range(n):
        pipe.xadd("jobs", {b"d": payload})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    r.xgroup_create("jobs", "g", id="0")
    ctx = mp.get_context("spawn")
    acked, full, cpu = ctx.Value("q", 0), ctx.Event(), ctx.Array("d", workers)
    seconds, server_cpu = _run_workers(
        _redis_worker,
        lambda i: (addr, acked, n, full, cpu, i),
        workers,
        full,
        lambda: True,  # a worker counts its records after the XACK answer
        pid,
        600,
    )
    return _result("Redis Streams", n, size, seconds, server_cpu, cpu)


def nats_queue(addr: str, pid: int, n: int, size: int = SIZE, workers: int = 4) -> Result:
    import nats
    from nats.js import api

    async def fill() -> None:
        nc = await nats.connect(f"nats://{addr}", max_reconnect_attempts=0)
        js = nc.jetstream(publish_async_max_pending=4_000, timeout=30)
        await js.add_stream(name="JOBS", subjects=["jobs"], storage=api.StorageType.FILE)
        payload = b"x" * size
        for _ in range(n):
            await js.publish_async("jobs", payload)
        await asyncio.wait_for(js.publish_async_completed(), timeout=120)
        await js.add_consumer(
            "JOBS",
            api.ConsumerConfig(
                durable_name="workers",
                ack_policy=api.AckPolicy.EXPLICIT,
                max_ack_pending=20_000,
            ),
        )
        await nc.close()

    asyncio.run(fill())
    ctx = mp.get_context("spawn")
    acked, full, cpu = ctx.Value("q", 0), ctx.Event(), ctx.Array("d", workers)
    seconds, server_cpu = _run_workers(
        _nats_worker,
        lambda i: (addr, acked, n, full, cpu, i),
        workers,
        full,
        lambda: True,  # a worker counts its records after the flush of their acks
        pid,
        600,
    )
    return _result("NATS JetStream", n, size, seconds, server_cpu, cpu)


# --------------------------------------------------------------------------- timing


def logstream_timing(addr: str, records: int = 200, delay_ms: int = 300) -> dict[str, Any]:
    """Nack-redelivery lateness and lease-expiry takeover, in ms (see the module docstring).
    Rounds of ``PAGE_T`` fresh records, so a member only ever sees the records timed."""
    from logstream import Admin, GroupAdmin, Producer, QueueConsumer

    topic = f"timing{time.monotonic_ns()}"
    with Admin(addr) as a:
        a.create_topic(topic, partitions=1)
    ga = GroupAdmin(addr)
    producer = Producer(addr)

    def fresh() -> None:
        for i in range(PAGE_T):
            producer.send(topic, value=b"t%d" % i)
        producer.flush()

    def take(q: Any, want: int) -> list[Any]:
        got: list[Any] = []
        deadline = time.monotonic() + 5
        while len(got) < want and time.monotonic() < deadline:
            got += q.poll(0.2, max_records=want - len(got))
        return got

    # nack: a member takes a round's records, nacks each with `delay_ms`, waits for them
    ga.create_queue_group(f"{topic}-nack", topics=[topic], start="latest")
    ga.create_queue_group(f"{topic}-lease", topics=[topic], start="latest", lease_ms=delay_ms)
    nack_late: list[int] = []
    takeover: list[int] = []
    try:
        with QueueConsumer(addr, group=f"{topic}-nack", max_records=PAGE_T) as q:
            while len(nack_late) < records:
                fresh()
                nacked_at: dict[int, int] = {}
                for m in take(q, PAGE_T):
                    m.nack(delay_ms=delay_ms)
                    nacked_at[m.offset] = time.monotonic_ns()
                q.commit()  # the nacks are in the broker's state from here on
                deadline = time.monotonic() + delay_ms / 1000 + 5
                while nacked_at and time.monotonic() < deadline:
                    for m in q.poll(0.05):
                        at = nacked_at.pop(m.offset, None)
                        if at is not None:
                            nack_late.append(time.monotonic_ns() - at - delay_ms * 1_000_000)
                        m.ack()
                q.commit()
        # lease expiry: member A acquires a round's records and goes silent; B takes over
        with QueueConsumer(addr, group=f"{topic}-lease", max_records=PAGE_T) as b:
            while len(takeover) < records:
                a = QueueConsumer(addr, group=f"{topic}-lease", max_records=PAGE_T)
                acquired_at: dict[int, int] = {}
                deadline = time.monotonic() + 5
                while len(acquired_at) < PAGE_T and time.monotonic() < deadline:
                    page = a.poll(0.2)
                    now = time.monotonic_ns()
                    acquired_at.update((m.offset, now) for m in page)
                    if not page:
                        fresh()
                deadline = time.monotonic() + delay_ms / 1000 + 5
                while acquired_at and time.monotonic() < deadline:
                    for m in b.poll(0.05):
                        at = acquired_at.pop(m.offset, None)
                        if at is not None:
                            takeover.append(time.monotonic_ns() - at - delay_ms * 1_000_000)
                        m.ack()
                b.commit()
                a.close()
    finally:
        producer.close()
    return {
        "delay_ms": delay_ms,
        "nack_late": latency_summary(nack_late) | {"n": len(nack_late)},
        "lease_late": latency_summary(takeover) | {"n": len(takeover)},
    }


# --------------------------------------------------------------------------- standalone


def _server(system: str) -> servers.Server:
    if system == "redis":
        return servers.redis_server()
    if system == "nats":
        return servers.nats_server()
    return servers.logstream_broker()


RUNNERS = {"logstream": logstream_queue, "redis": redis_queue, "nats": nats_queue}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--systems", default="logstream,redis,nats")
    ap.add_argument("--timing", action="store_true", help="also the nack / lease timing")
    ap.add_argument("--page", type=int, default=PAGE, help="records per fetch, every system")
    ap.add_argument("--py-spy", metavar="DIR", help="profile the broker (py-spy raw stacks)")
    args = ap.parse_args()
    n, w = args.records, args.workers
    os.environ["LOGSTREAM_BENCH_QUEUE_PAGE"] = str(args.page)
    systems = args.systems.split(",")
    rows: list[tuple[int, str, Result]] = []
    for run in range(args.runs):
        for system in systems:
            srv = _server(system)
            spy = None
            try:
                if system == "logstream" and args.py_spy:
                    out = Path(args.py_spy) / f"broker-run{run + 1}.txt"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                    spy = subprocess.Popen(
                        [exe, "record", "--pid", str(srv.pid), "-f", "raw", "-o", str(out),
                         "--rate", "200", "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    time.sleep(1.0)
                rows.append((run + 1, system, RUNNERS[system](srv.addr, srv.pid, n, SIZE, w)))
                r = rows[-1][2]
                print(
                    f"run {run + 1} {system}: {r.rate:,.0f} acks/s, server CPU "
                    f"{r.extra['server_cpu_us']:.2f} us/ack, workers "
                    f"{r.extra['worker_cpu_us']:.2f} us/ack",
                    flush=True,
                )
                if system == "logstream" and args.timing:
                    print(format_timing(logstream_timing(srv.addr)), flush=True)
            finally:
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(30)
                srv.stop()
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(
        f"Python {platform.python_version()}, {w} workers, {n:,} records of {SIZE} B, "
        f"{args.page} per fetch, "
        f"load average {load}"
    )
    print()
    print("| run | system | acks/s | server CPU us/ack | worker CPU us/ack |")
    print("| --- | --- | --- | --- | --- |")
    for run, system, r in rows:
        print(
            f"| {run} | {system} | {r.rate:,.0f} | {r.extra['server_cpu_us']:.1f} | "
            f"{r.extra['worker_cpu_us']:.1f} |"
        )


def format_timing(t: dict[str, Any]) -> str:
    lines = [
        f"| logstream timing (ms late; nack delay and lease {t['delay_ms']} ms) "
        "| n | p50 | p99 | max |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, label in (
        ("nack_late", "nack -> redelivery"),
        ("lease_late", "lease expiry -> takeover"),
    ):
        s = t[key]
        lines.append(
            f"| {label} | {s['n']} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['max_ms']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
