"""Request/reply round trips at a steady rate: logstream vs NATS vs Redis, same run.

    python benchmarks/peers/request_reply.py [--rate 500] [--seconds 10] [--size 100]
                                             [--systems logstream,nats,redis] [--runs 1]
                                             [--fetch]

Run alone, the logstream row also gives the CPU time per request of the broker, the
responder and the requester process (from /proc, while the requests flowed).

Used by ``make bench-peers`` (run.py calls :func:`logstream_rr`, :func:`nats_rr`,
:func:`redis_rr`) and runnable alone for profiling. Each system:

- one responder in its own spawned process, started and connected before the clock starts,
  answering every request with its payload unchanged (an echo service);
- the requester in the calling process sends ``rate`` requests per second for ``seconds``
  open loop (a send never waits for an earlier reply: a slow reply cannot thin out the load),
  and timestamps each reply as it arrives; latency = reply received - request sent;
- every reply is checked against its request (sequence number and payload); a missing or
  wrong reply fails the row.

The three clients:

- logstream: ``Requester.request_async`` (its replies arrive on the inbox stream's reader
  thread) to a 1-partition topic; the responder a push member (``QueueConsumer(push=True)``,
  decision 0041) calling ``msg.reply()`` and ``msg.ack()`` per request (``--fetch``: a
  member that polls with queue fetches instead).
- NATS (core, not JetStream): nats-py ``nc.request`` per request (a task each), responder
  ``subscribe(queue="svc")`` with ``msg.respond``.
- Redis: the requester ``LPUSH``es to a request list; the responder ``BRPOP``s it and
  ``LPUSH``es the answer to the requester's own reply list, which a reader thread ``BRPOP``s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers.workload import (  # noqa: E402
    Result,
    Timer,
    VerificationError,
    latency_summary,
    paced_schedule,
    reap,
    spawn,
    wait_until,
)

SEQ = struct.Struct("<q")
REPLY_GRACE_S = 10.0  # after the last send, how long the last replies may take


def _payload(seq: int, size: int) -> bytes:
    return SEQ.pack(seq) + b"r" * max(0, size - SEQ.size)


def summarize(system: str, sent: dict[int, int], got: dict[int, int], size: int, s: float):
    n = len(sent)
    if len(got) != n:
        raise VerificationError(f"{system} request/reply: {n} requests, {len(got)} replies")
    lat = [got[i] - sent[i] for i in range(n)]
    res = Result(system, "request reply", n, n * size, s)
    res.extra.update(latency_summary(lat))
    return res


def _ready_wait(ready, proc, what: str) -> None:
    if not ready.wait(60):
        reap(proc)
        raise RuntimeError(f"{what}: responder not ready in 60 s")


# --------------------------------------------------------------------------- logstream


def _ls_responder(addr: str, topic: str, ready, stop, push: bool = True) -> None:
    from logstream import QueueConsumer

    extra = {"push": True} if push else {}  # a push session (decision 0037)
    with QueueConsumer(
        addr, group="svc", topics=[topic], max_records=100, max_wait_ms=200, **extra
    ) as q:
        ready.set()
        while not stop.is_set():
            for m in q.poll(0.2):
                m.reply(m.value)
                m.ack()


def logstream_rr(
    addr: str,
    tag: str,
    rate: float,
    seconds: float,
    size: int,
    server_pid: int = 0,
    push: bool = True,
) -> Result:
    """With ``server_pid``, the result's ``cpu_us`` has the CPU per request of the broker,
    the responder and this (requester) process while the requests flowed. ``push``: the
    responder is a push member (``QueueConsumer(push=True)``), else it fetches."""
    import multiprocessing as mp

    from benchmarks.peers.queue_workload import proc_cpu_s
    from logstream import Admin, Requester

    topic = f"rr-{tag}"
    with Admin(addr) as admin:
        admin.create_topic(topic, partitions=1)
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = spawn(_ls_responder, (addr, topic, ready, stop, push))
    try:
        _ready_wait(ready, proc, "logstream")
        n, period = paced_schedule(rate, seconds)
        sent: dict[int, int] = {}
        got: dict[int, int] = {}
        bad: list[int] = []
        done = threading.Event()
        with Requester(addr) as r:
            r.request(topic, _payload(-1, size), timeout=30)  # warm: metadata, producer id

            def on_reply(seq: int, expected: bytes):
                def cb(future) -> None:
                    now = time.monotonic_ns()
                    if future.exception() is None and future.result().value == expected:
                        got[seq] = now
                    else:
                        bad.append(seq)
                    if len(got) + len(bad) == n:
                        done.set()

                return cb

            pids = [server_pid, proc.pid, os.getpid()] if server_pid else []
            cpu0 = [proc_cpu_s(p) for p in pids]
            with Timer() as t:
                t0 = time.monotonic_ns()
                for i in range(n):
                    wait_until(t0 + i * period)
                    value = _payload(i, size)
                    sent[i] = time.monotonic_ns()
                    f = r.request_async(topic, value, timeout=REPLY_GRACE_S)
                    f.add_done_callback(on_reply(i, value))
                done.wait(REPLY_GRACE_S + 5)
            cpu = [(proc_cpu_s(p) - c) / n * 1e6 for p, c in zip(pids, cpu0, strict=True)]
    finally:
        stop.set()
        reap(proc)
    if bad:
        raise VerificationError(f"logstream request/reply: {len(bad)} failed or wrong replies")
    res = summarize("logstream", sent, got, size, t.seconds)
    if cpu:
        res.extra["cpu_us"] = dict(zip(("broker", "responder", "requester"), cpu, strict=True))
    return res


# --------------------------------------------------------------------------- NATS


def _nats_responder(addr: str, subject: str, ready, stop) -> None:
    import nats

    async def main() -> None:
        nc = await nats.connect(f"nats://{addr}", max_reconnect_attempts=0)

        async def answer(msg) -> None:
            await msg.respond(msg.data)

        await nc.subscribe(subject, queue="svc", cb=answer)
        await nc.flush()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await nc.drain()

    asyncio.run(main())


def nats_rr(addr: str, tag: str, rate: float, seconds: float, size: int) -> Result:
    import multiprocessing as mp

    import nats

    subject = f"rr.{tag}"
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = spawn(_nats_responder, (addr, subject, ready, stop))
    n, period = paced_schedule(rate, seconds)
    sent: dict[int, int] = {}
    got: dict[int, int] = {}

    async def main() -> float:
        nc = await nats.connect(f"nats://{addr}", max_reconnect_attempts=0)
        await nc.request(subject, _payload(-1, size), timeout=30)  # warm: the reply inbox

        async def one(i: int) -> None:
            value = _payload(i, size)
            sent[i] = time.monotonic_ns()
            msg = await nc.request(subject, value, timeout=REPLY_GRACE_S)
            if msg.data == value:
                got[i] = time.monotonic_ns()

        tasks = []
        with Timer() as t:
            t0 = time.monotonic_ns()
            for i in range(n):
                left = t0 + i * period - time.monotonic_ns()
                if left > 0:
                    await asyncio.sleep(left / 1e9)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks, return_exceptions=True)
        await nc.close()
        return t.seconds

    try:
        _ready_wait(ready, proc, "NATS")
        seconds_taken = asyncio.run(main())
    finally:
        stop.set()
        reap(proc)
    return summarize("NATS", sent, got, size, seconds_taken)


# --------------------------------------------------------------------------- Redis


def _redis_responder(addr: str, queue: str, ready, stop) -> None:
    import redis

    host, port = addr.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    ready.set()
    while not stop.is_set():
        item = r.brpop([queue], timeout=0.2)
        if item is None:
            continue
        reply_to, _, value = item[1].partition(b"|")
        r.lpush(reply_to, value)


def redis_rr(addr: str, tag: str, rate: float, seconds: float, size: int) -> Result:
    import multiprocessing as mp

    import redis

    host, port = addr.rsplit(":", 1)
    queue, inbox = f"rr:{tag}:requests", f"rr:{tag}:reply:client1"
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = spawn(_redis_responder, (addr, queue, ready, stop))
    n, period = paced_schedule(rate, seconds)
    sent: dict[int, int] = {}
    got: dict[int, int] = {}
    wrong: list[int] = []

    def read_replies() -> None:
        rd = redis.Redis(host=host, port=int(port))
        deadline = time.monotonic() + seconds + REPLY_GRACE_S
        while len(got) + len(wrong) < n and time.monotonic() < deadline:
            item = rd.brpop([inbox], timeout=1)
            if item is None:
                continue
            now = time.monotonic_ns()
            value = item[1]
            seq = SEQ.unpack_from(value)[0]
            if value == _payload(seq, size):
                got[seq] = now
            else:
                wrong.append(seq)

    try:
        _ready_wait(ready, proc, "Redis")
        w = redis.Redis(host=host, port=int(port))
        w.lpush(queue, inbox.encode() + b"|" + _payload(-1, size))  # warm
        w.brpop([inbox], timeout=30)
        reader = threading.Thread(target=read_replies, daemon=True)
        reader.start()
        with Timer() as t:
            t0 = time.monotonic_ns()
            for i in range(n):
                wait_until(t0 + i * period)
                sent[i] = time.monotonic_ns()
                w.lpush(queue, inbox.encode() + b"|" + _payload(i, size))
            reader.join(seconds + REPLY_GRACE_S + 5)
    finally:
        stop.set()
        reap(proc)
    if wrong:
        raise VerificationError(f"Redis request/reply: {len(wrong)} wrong replies")
    return summarize("Redis", sent, got, size, t.seconds)


RUNNERS = {"logstream": logstream_rr, "nats": nats_rr, "redis": redis_rr}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--systems", default="logstream,nats,redis")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--fetch", action="store_true", help="logstream responder: queue fetches")
    args = ap.parse_args(argv)
    from benchmarks.peers import servers
    from benchmarks.peers.run import start_server

    servers.ensure_apt()
    servers.ensure_pip()
    print("| system | run | p50 ms | p99 ms | p99.9 ms | max ms | load avg | CPU us/request |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")

    for run in range(args.runs):
        for system in args.systems.split(","):
            srv = start_server(system)
            try:
                call = (srv.addr, f"cli{run}", args.rate, args.seconds, args.size)
                if system == "logstream":
                    res = logstream_rr(*call, server_pid=srv.pid, push=not args.fetch)
                else:
                    res = RUNNERS[system](*call)
            finally:
                srv.stop()
            e = res.extra
            cpu = " ".join(f"{k} {v:.0f}" for k, v in e.get("cpu_us", {}).items())
            print(
                f"| {system} | {run} | {e['p50_ms']:.3f} | {e['p99_ms']:.3f} | "
                f"{e['p999_ms']:.3f} | {e['max_ms']:.3f} | {os.getloadavg()[0]:.2f} | {cpu} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
