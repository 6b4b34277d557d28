"""NATS JetStream adapter (nats-py, asyncio).

Idiomatic batching: ``js.publish_async`` with up to 4,000 acknowledgements in flight (the
client's default window); replay through an ordered push consumer (no acks, flow control);
the group is a durable push consumer with ``AckPolicy.ALL``, acknowledging every 1,000th message
(which acknowledges all before it: NATS's analogue of an offset commit). Push consumers with a
callback measured ~5x faster than pull ``fetch(1000)`` in nats-py here, so they are the
client's best foot forward. Latency: the producer process publishes one message at a time and
waits for its PubAck; we read through an ordered push consumer's callback. Durable produce is
the same publish: nats-server 2.9 has no per-acknowledgement fsync option
(``sync_interval: always`` arrived in 2.10), so it shows JetStream "as configured".
"""

from __future__ import annotations

import asyncio
import time

import nats
from nats.js import api

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
)

SYSTEM = "NATS JetStream"
MAX_PENDING = 4_000
ACK_EVERY = 1_000


def client_version() -> str:
    from nats.aio.client import __version__

    return f"nats-py {__version__}"


def _stream(topic: str) -> str:
    return topic.upper().replace(".", "_")


async def _connect(addr: str):
    nc = await nats.connect(f"nats://{addr}", max_reconnect_attempts=0)
    return nc, nc.jetstream(publish_async_max_pending=MAX_PENDING, timeout=30)


async def _ensure_stream(js, topic: str) -> None:
    await js.add_stream(name=_stream(topic), subjects=[topic], storage=api.StorageType.FILE)


def _run(coro):
    return asyncio.run(coro)


async def _produce(addr: str, topic: str, n: int, size: int, op: str) -> Result:
    nc, js = await _connect(addr)
    try:
        await _ensure_stream(js, topic)
        pool = payloads(size, n)
        npool = len(pool)
        failures: list[BaseException] = []

        def on_done(fut: asyncio.Future) -> None:
            if not fut.cancelled() and fut.exception() is not None:
                failures.append(fut.exception())

        publish = js.publish_async
        with Timer() as t:
            for i in range(n):
                fut = await publish(topic, pool[i % npool])
                fut.add_done_callback(on_done)
            await asyncio.wait_for(js.publish_async_completed(), timeout=120)
        if failures:
            raise AssertionError(f"{SYSTEM} {op}: {len(failures)} failed, e.g. {failures[0]!r}")
        info = await js.stream_info(_stream(topic))
        if info.state.messages < n:
            raise AssertionError(f"{SYSTEM} {op}: stream holds {info.state.messages} < {n}")
        return Result(SYSTEM, op, n, n * size, t.seconds)
    finally:
        await nc.close()


def produce(addr: str, topic: str, n: int, size: int) -> Result:
    return _run(_produce(addr, topic, n, size, "produce"))


def durable_produce(addr: str, topic: str, n: int, size: int) -> Result:
    res = _run(_produce(addr, topic, n, size, "durable produce"))
    res.extra["durability"] = "as configured (no per-ack fsync in 2.9)"
    return res


class _Drain:
    """Callback state for a push subscription: counts records and bytes, calls ``on_record``,
    and is done when the stream's message count (read from the server before the read) has
    arrived, or when nothing arrived for ``idle`` seconds (a short read, ``verify()`` says)."""

    def __init__(self, expected: int, ack_every: int = 0, idle: float = 5.0) -> None:
        self.expected = expected
        self.ack_every = ack_every
        self.idle = idle
        self.count = 0
        self.nbytes = 0
        self.done = asyncio.Event()
        if expected == 0:
            self.done.set()

    async def cb(self, msg) -> None:
        self.count += 1
        self.nbytes += len(msg.data)
        if self.ack_every and (self.count % self.ack_every == 0 or self.count >= self.expected):
            await msg.ack()  # AckPolicy.ALL: acknowledges every message up to this one
        if self.count >= self.expected:
            self.done.set()

    async def wait(self) -> None:
        seen = -1
        while not self.done.is_set() and self.count != seen:
            seen = self.count
            try:
                await asyncio.wait_for(self.done.wait(), timeout=self.idle)
            except TimeoutError:
                pass


async def _replay(addr: str, topic: str, n: int, size: int) -> Result:
    nc, js = await _connect(addr)
    try:
        info = await js.stream_info(_stream(topic))
        drain = _Drain(info.state.messages)
        with Timer() as t:
            sub = await js.subscribe(topic, cb=drain.cb, ordered_consumer=True)
            await drain.wait()
        await sub.unsubscribe()
        verify(f"{SYSTEM} replay", n, n * size, drain.count, drain.nbytes)
        return Result(SYSTEM, "replay", drain.count, drain.nbytes, t.seconds)
    finally:
        await nc.close()


def replay(addr: str, topic: str, n: int, size: int) -> Result:
    return _run(_replay(addr, topic, n, size))


async def _group(addr: str, topic: str, n: int, size: int, group: str) -> Result:
    nc, js = await _connect(addr)
    try:
        stream = _stream(topic)
        info = await js.stream_info(stream)
        drain = _Drain(info.state.messages, ack_every=ACK_EVERY)
        cfg = api.ConsumerConfig(ack_policy=api.AckPolicy.ALL, max_ack_pending=10 * ACK_EVERY)
        with Timer() as t:
            sub = await js.subscribe(
                topic,
                durable=group,
                cb=drain.cb,
                manual_ack=True,
                config=cfg,
                flow_control=True,
                idle_heartbeat=5,
            )
            await drain.wait()
            await nc.flush()
        await sub.unsubscribe()
        verify(f"{SYSTEM} group consume", n, n * size, drain.count, drain.nbytes)
        deadline = time.monotonic() + 10
        while True:
            ci = await js.consumer_info(stream, group)
            if ci.num_ack_pending == 0 and ci.num_pending == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{SYSTEM} group consume: {ci.num_ack_pending} unacknowledged, "
                    f"{ci.num_pending} undelivered"
                )
            await asyncio.sleep(0.05)
        return Result(SYSTEM, "group consume", drain.count, drain.nbytes, t.seconds)
    finally:
        await nc.close()


def group_consume(addr: str, topic: str, n: int, size: int, group: str = "bench") -> Result:
    return _run(_group(addr, topic, n, size, group))


def _latency_producer(addr: str, topic: str, rate: float, seconds: float, size: int) -> None:
    async def main() -> None:
        nc, js = await _connect(addr)
        try:
            n, period = paced_schedule(rate, seconds)
            t0 = time.monotonic_ns() + 50_000_000
            for i in range(n):
                left = t0 + i * period - time.monotonic_ns()
                if left > 0:
                    await asyncio.sleep(left / 1e9)
                await js.publish(topic, stamped(i, size))
        finally:
            await nc.close()

    asyncio.run(main())


async def _latency(addr: str, topic: str, rate: float, seconds: float, size: int) -> Result:
    nc, js = await _connect(addr)
    try:
        await _ensure_stream(js, topic)
        n, _ = paced_schedule(rate, seconds)
        lat: list[int] = []
        nbytes = 0
        done = asyncio.Event()

        async def cb(m) -> None:
            nonlocal nbytes
            lat.append(time.monotonic_ns() - sent_ns(m.data))
            nbytes += len(m.data)
            if len(lat) >= n:
                done.set()

        sub = await js.subscribe(topic, cb=cb, ordered_consumer=True)
        deadline = time.monotonic() + seconds + 30
        proc = spawn(_latency_producer, (addr, topic, rate, seconds, size))
        try:
            with Timer() as t:
                while not done.is_set() and time.monotonic() < deadline:
                    try:
                        await asyncio.wait_for(done.wait(), timeout=1)
                    except TimeoutError:
                        check_alive(proc, f"{SYSTEM} latency")
        finally:
            await asyncio.get_running_loop().run_in_executor(None, reap, proc)
        await sub.unsubscribe()
        verify(f"{SYSTEM} latency", n, n * size, len(lat), nbytes)
        res = Result(SYSTEM, "latency", len(lat), nbytes, t.seconds)
        res.extra.update(latency_summary(lat))
        return res
    finally:
        await nc.close()


def latency(addr: str, topic: str, rate: float, seconds: float, size: int) -> Result:
    return _run(_latency(addr, topic, rate, seconds, size))
