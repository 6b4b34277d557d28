"""Work-queue consume with a per-message ack: logstream queue groups vs Redis Streams.

    python benchmarks/peers/queue_workload.py [--records 100000] [--workers 4] [--runs 1]

Same machine, same run, each system on a fresh server in a temp dir (servers.py). N records
of 100 B are written first; then W worker processes (spawned, started and connected before
the clock starts) consume and acknowledge every record:

- logstream: a topic of 4 partitions, one queue group; each worker a ``QueueConsumer``
  (``max_records`` 100) calling ``msg.ack()`` per message (acks ride on the next fetch);
- Redis Streams: one stream, one consumer group; each worker ``XREADGROUP COUNT 100`` and
  one ``XACK`` of those ids, pipelined with nothing else (redis-py + hiredis).

The clock stops when the acknowledged count reaches N (logstream: the group's acknowledged
total as the broker reports it; Redis: the workers' acked counts, each XACK answered).
NATS JetStream is not run here (not installed on this machine). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import servers  # noqa: E402

SIZE = 100
PAGE = 100


def _ls_worker(addr: str, group: str, ready: mp.Event, go: mp.Event, stop: mp.Event) -> None:
    from logstream import QueueConsumer

    q = QueueConsumer(addr, group=group, max_records=PAGE, max_wait_ms=100)
    ready.set()
    go.wait()
    while not stop.is_set():
        for msg in q.poll(0.1):
            msg.ack()
    q.close()


def _redis_worker(
    addr: str, i: int, acked: mp.Value, ready: mp.Event, go: mp.Event, stop: mp.Event
) -> None:
    import redis

    host, port = addr.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    ready.set()
    go.wait()
    while not stop.is_set():
        got = r.xreadgroup("g", f"c{i}", {"jobs": ">"}, count=PAGE, block=100)
        if not got:
            continue
        ids = [mid for mid, _ in got[0][1]]
        r.xack("jobs", "g", *ids)
        with acked.get_lock():
            acked.value += len(ids)


def _run_workers(target, args_for, workers: int, done, timeout: float) -> float:  # type: ignore[no-untyped-def]
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
    started = time.perf_counter()
    go.set()
    try:
        while not done():
            if time.perf_counter() - started > timeout:
                raise TimeoutError("workload did not finish")
            time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        stop.set()
        for p in procs:
            p.join(20)
            if p.is_alive():
                p.kill()


def logstream_run(n: int, workers: int) -> float:
    from logstream import Admin, GroupAdmin, Producer

    with servers.logstream_broker() as srv:
        with Admin(srv.addr) as a:
            a.create_topic("jobs", partitions=4)
        with Producer(srv.addr) as p:
            payload = b"x" * SIZE
            for _ in range(n):
                p.send("jobs", value=payload)
            p.flush()
        ga = GroupAdmin(srv.addr)
        ga.create_queue_group("workers", topics=["jobs"])

        def done() -> bool:
            return ga.describe_queue_group("workers").total.acknowledged >= n

        return _run_workers(_ls_worker, lambda i: (srv.addr, "workers"), workers, done, timeout=600)


def redis_run(n: int, workers: int) -> float:
    import redis

    with servers.redis_server() as srv:
        host, port = srv.addr.rsplit(":", 1)
        r = redis.Redis(host=host, port=int(port))
        pipe = r.pipeline(transaction=False)
        payload = b"x" * SIZE
        for i in range(n):
            pipe.xadd("jobs", {b"d": payload})
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        r.xgroup_create("jobs", "g", id="0")
        acked = mp.get_context("spawn").Value("q", 0)
        return _run_workers(
            _redis_worker,
            lambda i: (srv.addr, i, acked),
            workers,
            lambda: acked.value >= n,
            timeout=600,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    n, w = args.records, args.workers
    rows = []
    for run in range(args.runs):
        ls = logstream_run(n, w)
        rd = redis_run(n, w)
        rows.append((run + 1, n / ls, n / rd))
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(
        f"Python {platform.python_version()}, {w} workers, {n:,} records of {SIZE} B, "
        f"load average {load}"
    )
    print()
    print("| run | logstream queue group (acks/s) | Redis Streams (acks/s) | ratio |")
    print("| --- | --- | --- | --- |")
    for run, a, b in rows:
        print(f"| {run} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
