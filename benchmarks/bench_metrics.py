"""What /metrics costs: the produce and replay rows of bench_e2e with the HTTP listener off
and on, measured in the same run.

    python benchmarks/bench_metrics.py            # prints the section and rewrites RESULTS.md
    python benchmarks/bench_metrics.py --no-write

Two broker processes run side by side (one with ``http_listen`` and a scraper reading
/metrics every second, as Prometheus would; one without), and the rounds alternate
between them so that the machine's noise falls on both alike. Per row: the median of
``ROUNDS`` runs of records/s and of *broker* CPU time per record (``/proc/PID/stat``),
which a shared machine's noisy neighbours disturb far less than wall-clock rates.

The produce and replay children are bench_e2e's (``Producer.send`` of 100 B records,
4 partitions; a fresh consumer's ``poll_batch`` from offset 0). Bounded: bench_e2e's
record and time limits per run.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_e2e import PARTITIONS, _child, _result  # noqa: E402

ROUNDS = 7
RECORDS = 2_000_000
HANDLER_BLOCKS = 30
HANDLER_CALLS = 200
SIZE = 100
HTTP_LINE = re.compile(r"logstream http listening on (\S+)")


def _broker_cpu(pid: int) -> float:
    """CPU seconds of every thread of ``pid`` so far, in nanoseconds' resolution (schedstat;
    /proc/PID/stat counts in 10 ms ticks, too coarse for a one-second run). Threads that
    ended are missed, which the broker's long-lived threads never do mid-run."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


class _Scraper:
    """GET /metrics once a second until stopped; counts the scrapes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with urllib.request.urlopen(self.url, timeout=10) as resp:
                resp.read()
            self.scrapes += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _one_round(broker: object, admin: object, tag: str, rnd: int) -> dict[str, float]:
    address = broker.address  # type: ignore[attr-defined]
    pid = broker.pid  # type: ignore[attr-defined]
    topic = f"cost-{tag}-{rnd}"
    admin.create_topic(topic, partitions=PARTITIONS)  # type: ignore[attr-defined]
    cpu0 = _broker_cpu(pid)
    prod = _result(_child("produce", address, topic, SIZE, RECORDS, "send"))
    cpu1 = _broker_cpu(pid)
    n = int(prod["records"])  # type: ignore[call-overload]
    rep = _result(_child("replay", address, topic, n, "poll_batch"))
    cpu2 = _broker_cpu(pid)
    rn = int(rep["records"])  # type: ignore[call-overload]
    admin.delete_topic(topic)  # type: ignore[attr-defined]
    return {
        "produce_rate": n / float(prod["seconds"]),  # type: ignore[arg-type]
        "produce_cpu_ns": (cpu1 - cpu0) / n * 1e9,
        "replay_rate": rn / float(rep["seconds"]),  # type: ignore[arg-type]
        "replay_cpu_ns": (cpu2 - cpu1) / max(rn, 1) * 1e9,
    }


def _best_per_call(fn: object, calls: int = HANDLER_CALLS, blocks: int = HANDLER_BLOCKS) -> float:
    best = 1e9
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()  # type: ignore[operator]
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def _stream_wrapper_cost(metrics: object, messages: int = 20_000) -> float:
    """Per message: the async-generator layer observe_handler puts around a stream."""
    import asyncio

    from logstream.broker.http.rpc_metrics import UNARY_STREAM, observe_handler

    async def source(request: object, context: object) -> object:
        for i in range(messages):
            yield i

    wrapped = observe_handler(metrics, "Log.Subscribe", UNARY_STREAM, source)  # type: ignore[arg-type]

    async def drain(handler: object) -> float:
        t0 = time.perf_counter()
        async for _ in handler(None, None):  # type: ignore[operator]
            pass
        return time.perf_counter() - t0

    best = 1e9
    for _ in range(5):
        plain = asyncio.run(drain(source))
        layered = asyncio.run(drain(wrapped))
        best = min(best, max(0.0, layered - plain) / messages)
    return best


def _handler_costs(tmp: Path) -> list[str]:
    """The hooks alone, against the handler work they ride on: ProduceHandler.produce (one
    1,000-record batch) and one partition read of the fetch path (1 MiB), timed with
    NullMetrics, and the BrokerMetrics hook each calls, timed with the same arguments (best
    block of each: the machine's noise is far larger than the hooks). Also the CPU of one
    scrape."""
    from prometheus_client import generate_latest

    from logstream.broker import Broker, BrokerConfig
    from logstream.broker.fetch import FetchHandler, FetchSpec
    from logstream.broker.http import BrokerMetrics
    from logstream.broker.http.server import HttpListener
    from logstream.broker.produce import ProduceHandler
    from logstream.codec import encode_batch

    broker = Broker.open(BrokerConfig(data_dir=tmp / "handlers"))
    try:
        broker.manager.create_topic("h", partitions=1)
        plog = broker.manager.get_log("h", 0)
        batch = encode_batch([b"x" * SIZE] * 1000)
        produce, fetch = ProduceHandler(broker), FetchHandler(broker)
        metrics = BrokerMetrics(2000, 1.0)
        produce_s = _best_per_call(lambda: produce.produce("h", 0, [batch]))
        produced_s = _best_per_call(lambda: metrics.produced(plog, 1000, len(batch), 1))
        spec = FetchSpec("h", 0, 0)
        data = fetch._read_one(spec, 1 << 20, skip=False).records
        fetch_s = _best_per_call(lambda: fetch._read_one(spec, 1 << 20, skip=False))
        fetched_s = _best_per_call(lambda: metrics.fetched("h", 0, data))
        stream_s = _stream_wrapper_cost(metrics)
        listener = HttpListener("127.0.0.1:0", metrics)
        listener.attach(broker, port=lambda: 0, request_bytes=lambda: 0)
        scrape_s = _best_per_call(lambda: generate_latest(metrics.registry), 5, 5)
        listener.stop()
    finally:
        broker.close()
    return [
        f"| `ProduceHandler.produce`, one 1,000-record batch | {produce_s * 1e6:.1f} us | "
        f"`produced()` {produced_s * 1e6:.2f} us | {produced_s / produce_s * 100:.2f}% |",
        f"| one partition read of a fetch ({len(data) >> 10} KiB) | {fetch_s * 1e6:.1f} us | "
        f"`fetched()` {fetched_s * 1e6:.2f} us | {fetched_s / fetch_s * 100:.2f}% |",
        f"| one message of a Subscribe or ProduceStream | - | stream wrapper "
        f"{stream_s * 1e6:.2f} us | (a message carries up to `max_bytes` of batches) |",
        f"| one scrape of /metrics (`generate_latest`) | - | {scrape_s * 1e3:.1f} ms | "
        f"{scrape_s * 100:.2f}% of a core at one scrape a second |",
    ]


def run() -> str:
    from common import machine_line

    from logstream import Admin
    from logstream.testing.broker import BrokerProcess

    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    scrapes = 0
    with tempfile.TemporaryDirectory() as tmp:
        handler_rows = _handler_costs(Path(tmp))
        off = BrokerProcess(Path(tmp) / "off", log_level="WARNING").start()
        on = BrokerProcess(Path(tmp) / "on", log_level="WARNING", http_listen="127.0.0.1:0").start()
        match = HTTP_LINE.search(on.output())
        assert match, on.output()
        scraper = _Scraper(f"http://{match.group(1)}/metrics")
        try:
            admins = {"off": Admin(off.address), "on": Admin(on.address)}
            brokers = {"off": off, "on": on}
            for rnd in range(ROUNDS):
                order = ("off", "on") if rnd % 2 == 0 else ("on", "off")
                for tag in order:
                    results[tag].append(_one_round(brokers[tag], admins[tag], tag, rnd))
            for a in admins.values():
                a.close()
        finally:
            scraper.stop()
            scrapes = scraper.scrapes
            off.terminate()
            on.terminate()

    def med(tag: str, key: str) -> float:
        return statistics.median(r[key] for r in results[tag])

    rows = []
    for phase, label in (("produce", "produce `send`"), ("replay", "replay `poll_batch`")):
        r_off, r_on = med("off", f"{phase}_rate"), med("on", f"{phase}_rate")
        c_off, c_on = med("off", f"{phase}_cpu_ns"), med("on", f"{phase}_cpu_ns")
        rows.append(
            f"| {label} | {r_off / 1e6:.3f} M | {r_on / 1e6:.3f} M | "
            f"{(r_on / r_off - 1) * 100:+.1f}% | {c_off:.0f} ns | {c_on:.0f} ns | "
            f"{(c_on / c_off - 1) * 100:+.1f}% |"
        )
    return "\n".join(
        [
            "## Cost of /metrics (benchmarks/bench_metrics.py)",
            "",
            f"Machine: {machine_line()}",
            "",
            f"{SIZE} B records, {PARTITIONS} partitions, up to {RECORDS:,} records per run; "
            f"two brokers side by side, the HTTP listener off and on (scraped every second: "
            f"{scrapes} scrapes in the run), {ROUNDS} alternating rounds, medians. Broker CPU "
            "= the broker process's CPU time per record (robust to noisy neighbours; the "
            "wall-clock rates of a shared machine move by several per cent between runs).",
            "",
            "| phase | records/s off | records/s on | change | broker CPU/record off "
            "| on | change |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "The hooks alone, in-process on one data directory, against the handler work "
            f"they ride on (best of {HANDLER_BLOCKS} blocks of {HANDLER_CALLS} calls):",
            "",
            "| call | time | hook added with the listener on | share |",
            "| --- | --- | --- | --- |",
            *handler_rows,
        ]
    )


if __name__ == "__main__":
    section = run()
    print(section)
    if "--no-write" not in sys.argv:
        from common import write_section

        write_section("metrics", section)
