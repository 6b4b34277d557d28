"""What every adapter shares: payloads, verification, results, latency statistics.

Every adapter module exposes the same five functions, each taking the server address first::

    produce(addr, topic, n, size) -> Result            # best idiomatic batching
    durable_produce(addr, topic, n, size) -> Result     # durable on every acknowledgement
    replay(addr, topic, n, size) -> Result              # read everything from the start
    group_consume(addr, topic, n, size) -> Result       # consumer group + acks / commits
    latency(addr, topic, rate, seconds, size) -> Result # producer in its own process

Consumers stop at the end of the data (not after ``n`` records) and then ``verify()`` the count
and the bytes they saw, so a short or a padded read fails instead of looking fast.
"""

from __future__ import annotations

import math
import os
import struct
import time
from dataclasses import asdict, dataclass, field

POOL_BYTES = 8 << 20  # distinct random payloads per size: no repeats inside any batch
STAMP = struct.Struct("<q")  # latency records start with the intended send time (ns)


class VerificationError(AssertionError):
    """A consumer saw a different number of records or bytes than were produced."""


def verify(what: str, expected_n: int, expected_bytes: int, got_n: int, got_bytes: int) -> None:
    if got_n != expected_n or got_bytes != expected_bytes:
        raise VerificationError(
            f"{what}: expected {expected_n} records / {expected_bytes} bytes, "
            f"received {got_n} records / {got_bytes} bytes"
        )


def payloads(size: int, n: int) -> list[bytes]:
    """A pool of incompressible payloads of ``size`` bytes; record i uses ``pool[i % len]``.

    The pool is large enough (8 MiB, at least 1,024 entries) that no client batch repeats a
    payload, so a compressing client gains nothing from the pool's cycling.
    """
    count = max(1024, min(n, POOL_BYTES // size))
    blob = os.urandom(size * count)
    return [blob[i * size : (i + 1) * size] for i in range(count)]


@dataclass
class Result:
    system: str
    op: str
    records: int
    bytes: int
    seconds: float
    verified: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rate"] = self.rate
        d["mb_s"] = self.mb_s
        return d


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def latency_summary(latencies_ns: list[int]) -> dict[str, float]:
    xs = sorted(latencies_ns)
    return {
        "p50_ms": percentile(xs, 50) / 1e6,
        "p99_ms": percentile(xs, 99) / 1e6,
        "p999_ms": percentile(xs, 99.9) / 1e6,
        "max_ms": (xs[-1] / 1e6) if xs else math.nan,
    }


def stamped(seq: int, size: int) -> bytes:
    """A latency record: send time (``time.monotonic_ns``, system-wide on Linux, so it
    compares across processes), sequence number, padding to ``size``."""
    head = STAMP.pack(time.monotonic_ns()) + STAMP.pack(seq)
    return head + b"\0" * (size - len(head))


def sent_ns(value: bytes | memoryview) -> int:
    return STAMP.unpack_from(value, 0)[0]


def paced_schedule(rate: float, seconds: float) -> tuple[int, int]:
    """(count, period_ns) for a steady ``rate`` over ``seconds``."""
    return int(rate * seconds), int(1e9 / rate)


def wait_until(t_ns: int) -> None:
    """Sleep until ``time.monotonic_ns()`` >= t_ns; no spinning (2 cores are shared with the
    server and the consumer). Records are stamped when actually sent, so oversleeping shifts
    the send, not the measured latency; a producer that falls behind sends at once."""
    left = t_ns - time.monotonic_ns()
    if left > 0:
        time.sleep(left / 1e9)


def spawn(target, args: tuple):  # -> multiprocessing.Process
    """Start ``target(*args)`` in a fresh interpreter (the latency producer's own process)."""
    import multiprocessing as mp

    proc = mp.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def check_alive(proc, what: str) -> None:
    """Raise when a helper process died with an error (instead of waiting out a deadline)."""
    if not proc.is_alive() and proc.exitcode not in (0, None):
        raise RuntimeError(f"{what}: producer process exited with {proc.exitcode}")


def reap(proc) -> None:
    proc.join(timeout=10)
    if proc.is_alive():
        proc.kill()
        proc.join(timeout=5)
