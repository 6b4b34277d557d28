"""Redis Streams adapter (redis-py with the hiredis parser).

Idiomatic batching: XADD in non-transactional pipelines of 1,000; replay with XRANGE pages of
1,000; the group reads with XREADGROUP COUNT 1,000 and acknowledges each page with one XACK
pipelined with the next read. Durable produce switches the server to ``appendfsync always``
(Redis fsyncs the AOF before it answers each pipeline); Debian's Redis 7.0 predates WAITAOF.
"""

from __future__ import annotations

import time

import redis

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

SYSTEM = "Redis Streams"
PIPELINE = 1_000
PAGE = 1_000
FIELD = b"d"


def _client(addr: str) -> redis.Redis:
    host, port = addr.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), socket_timeout=60)


def client_version() -> str:
    try:
        import hiredis

        return f"redis-py {redis.__version__} + hiredis {hiredis.__version__}"
    except ImportError:  # pragma: no cover - the bench extra installs it
        return f"redis-py {redis.__version__} (no hiredis)"


def _produce(r: redis.Redis, key: str, n: int, size: int, op: str) -> Result:
    pool = payloads(size, n)
    npool = len(pool)
    pipe = r.pipeline(transaction=False)
    cmd = pipe.execute_command
    with Timer() as t:
        for start in range(0, n, PIPELINE):
            for i in range(start, min(n, start + PIPELINE)):
                cmd("XADD", key, "*", FIELD, pool[i % npool])
            pipe.execute()
    length = r.xlen(key)
    if length < n:
        raise AssertionError(f"{SYSTEM} {op}: XLEN {length} < {n}")
    return Result(SYSTEM, op, n, n * size, t.seconds)


def produce(addr: str, topic: str, n: int, size: int) -> Result:
    return _produce(_client(addr), topic, n, size, "produce")


def durable_produce(addr: str, topic: str, n: int, size: int) -> Result:
    r = _client(addr)
    before = r.config_get("appendfsync")["appendfsync"]
    r.config_set("appendfsync", "always")
    try:
        res = _produce(r, topic, n, size, "durable produce")
    finally:
        r.config_set("appendfsync", before)
    res.extra["durability"] = "appendfsync always"
    return res


def replay(addr: str, topic: str, n: int, size: int) -> Result:
    r = _client(addr)
    count = nbytes = 0
    start = "-"
    with Timer() as t:
        while True:
            page = r.xrange(topic, min=start, max="+", count=PAGE)
            if not page:
                break
            for _id, fields in page:
                nbytes += len(fields[FIELD])
            count += len(page)
            start = b"(" + page[-1][0]
    verify(f"{SYSTEM} replay", n, n * size, count, nbytes)
    return Result(SYSTEM, "replay", count, nbytes, t.seconds)


def group_consume(addr: str, topic: str, n: int, size: int, group: str = "bench") -> Result:
    r = _client(addr)
    r.xgroup_create(topic, group, id="0")
    count = nbytes = 0
    pipe = r.pipeline(transaction=False)
    with Timer() as t:
        resp = r.xreadgroup(group, "c1", {topic: ">"}, count=PAGE)
        while resp:
            entries = resp[0][1]
            if not entries:
                break
            ids = []
            for msg_id, fields in entries:
                ids.append(msg_id)
                nbytes += len(fields[FIELD])
            count += len(entries)
            # acknowledge this page and read the next in one round trip
            pipe.xack(topic, group, *ids)
            pipe.xreadgroup(group, "c1", {topic: ">"}, count=PAGE)
            _acked, resp = pipe.execute()
    pending = r.xpending(topic, group)["pending"]
    verify(f"{SYSTEM} group consume", n, n * size, count, nbytes)
    if pending:
        raise AssertionError(f"{SYSTEM} group consume: {pending} records left unacknowledged")
    return Result(SYSTEM, "group consume", count, nbytes, t.seconds)


def _latency_producer(addr: str, topic: str, rate: float, seconds: float, size: int) -> None:
    r = _client(addr)
    r.ping()
    n, period = paced_schedule(rate, seconds)
    t0 = time.monotonic_ns() + 50_000_000
    for i in range(n):
        wait_until(t0 + i * period)
        r.xadd(topic, {FIELD: stamped(i, size)})


def latency(addr: str, topic: str, rate: float, seconds: float, size: int) -> Result:
    """Producer process XADDs one record at a time at ``rate``; we XREAD BLOCK as they land."""
    r = _client(addr)
    n, _ = paced_schedule(rate, seconds)
    lat: list[int] = []
    nbytes = 0
    last = "0-0"
    deadline = time.monotonic() + seconds + 30
    proc = spawn(_latency_producer, (addr, topic, rate, seconds, size))
    try:
        with Timer() as t:
            while len(lat) < n and time.monotonic() < deadline:
                resp = r.xread({topic: last}, count=PAGE, block=1000)
                if not resp:
                    check_alive(proc, f"{SYSTEM} latency")
                    continue
                now = time.monotonic_ns()
                for msg_id, fields in resp[0][1]:
                    v = fields[FIELD]
                    lat.append(now - sent_ns(v))
                    nbytes += len(v)
                    last = msg_id
    finally:
        reap(proc)
    verify(f"{SYSTEM} latency", n, n * size, len(lat), nbytes)
    res = Result(SYSTEM, "latency", len(lat), nbytes, t.seconds)
    res.extra.update(latency_summary(lat))
    return res
