"""How fast the web console answers with 1,000 topics (target: a page in under 300 ms).

    python benchmarks/bench_console.py            # prints the section and rewrites RESULTS.md
    python benchmarks/bench_console.py --no-write
    python benchmarks/bench_console.py --topics 200 --rounds 5 --no-browser --no-write

One broker process (``http_listen`` on 127.0.0.1, a free port) with ``--topics`` topics
of 2 partitions, 10 records each (``bench-0000`` ...), one consumer group committed on
every topic and one queue group. Then, interleaved per round so the machine's noise falls
on every route alike:

- **server**: each JSON route the pages call, fetched over loopback; per route the median
  and worst wall-clock time of ``--rounds`` requests, and the broker's CPU time per request
  (``/proc/PID/task/*/schedstat``, robust to noisy neighbours: the load average is printed
  next to the figures);
- **browser** (when Debian's ``chromium`` and ``chromium-driver`` are installed, unless
  ``--no-browser``): headless Chromium opens each page and the time from navigation start
  (``performance.now()``) until the page shows its data is read once the table is there.

Bounded: ``--topics`` at most 5,000, ``--rounds`` requests per route, 60 s per page wait.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from logstream import Admin, Consumer, GroupAdmin, Producer  # noqa: E402
from logstream.testing.broker import BrokerProcess  # noqa: E402
from logstream.types import TopicPartition  # noqa: E402

HTTP_LINE = re.compile(r"logstream http listening on (\S+)")
TOTAL_CPU = re.compile(r"total-cpu;dur=([\d.]+)")
TARGET_MS = 300
PAGE_WAIT_S = 60
ROUTES = {
    "overview": "/api/overview",
    "topic": "/api/topic?name={topic}",
    "messages": "/api/messages?topic={topic}&partition=0",
    "groups": "/api/groups",
    "queues": "/api/queues",
    "page + script": "/",
}


def _get(url: str) -> tuple[int, float]:
    """(answer bytes, the broker's CPU ms from its Server-Timing header, 0 if none)."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        size = len(resp.read())
        timing = resp.headers.get("Server-Timing", "")
    found = TOTAL_CPU.search(timing)
    return size, float(found.group(1)) if found else 0.0


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _populate(address: str, topics: int) -> list[str]:
    names = [f"bench-{i:04d}" for i in range(topics)]
    with Admin(address) as admin:
        for start in range(0, topics, 100):
            admin.create_topics([(n, 2, None) for n in names[start : start + 100]])
    with Producer(address) as producer:
        for n in names:
            for i in range(10):
                producer.send(n, b'{"n": %d}' % i, key=b"k%d" % i, partition=i % 2)
        producer.flush(60)
    consumer = Consumer(address, group="bench-readers")
    consumer.commit({TopicPartition(n, p): 5 for n in names for p in range(2)})
    consumer.close()
    with GroupAdmin(address) as ga:
        ga.create_queue_group("bench-queue", topics=names[:10])
    return names


def _server_times(base: str, topic: str, rounds: int) -> dict[str, Any]:
    walls: dict[str, list[float]] = {r: [] for r in ROUTES}
    cpus: dict[str, list[float]] = {r: [] for r in ROUTES}
    sizes: dict[str, int] = {}
    for _ in range(rounds):
        for name, path in ROUTES.items():
            t0 = time.perf_counter()
            size, cpu_ms = _get(base + path.format(topic=topic))
            if name == "page + script":
                size += _get(base + "/static/console.js")[0] + _get(base + "/static/console.css")[0]
            walls[name].append(time.perf_counter() - t0)
            cpus[name].append(cpu_ms)
            sizes[name] = size
    return {
        name: {
            "median_ms": statistics.median(walls[name]) * 1000,
            "max_ms": max(walls[name]) * 1000,
            "cpu_ms": statistics.median(cpus[name]),
            "bytes": sizes[name],
        }
        for name in ROUTES
    }


BREAKDOWN = """
const api = performance.getEntriesByType("resource").filter((e) => e.name.includes("/api/"));
const script = performance.getEntriesByType("resource").find((e) => e.name.endsWith(".js"));
return [performance.now(), script ? script.responseEnd : 0,
        Math.max(0, ...api.map((e) => e.responseEnd))];
"""


def _browser_times(
    base: str, topic: str, rounds: int
) -> dict[str, tuple[float, float, float]] | None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(chromium).exists() and Path(driver_path).exists()):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)

    # console.js writes "updated <time>" into #status once a view has rendered; checked in
    # the page (fetching element handles per poll would slow the page being measured)
    rendered = "return document.getElementById('status').textContent.startsWith('updated')"

    def ready(d: Any) -> bool:
        return bool(d.execute_script(rendered))

    pages = {
        "overview": "/#/",
        "topic": f"/#/topic/{topic}",
        "messages": f"/#/messages?topic={topic}&partition=0",
        "groups": "/#/groups",
        "queues": "/#/queues",
    }
    times: dict[str, list[tuple[float, float, float]]] = {p: [] for p in pages}
    try:
        for _ in range(rounds):
            for name, path in pages.items():
                driver.get("about:blank")
                driver.get(base + path)
                WebDriverWait(driver, PAGE_WAIT_S, poll_frequency=0.005).until(ready)
                shown, script, data = driver.execute_script(BREAKDOWN)
                times[name].append((float(script), float(data), float(shown)))
    finally:
        driver.quit()
    return {
        name: tuple(statistics.median(t[i] for t in v) for i in range(3))  # type: ignore[misc]
        for name, v in times.items()
    }


def run(topics: int, rounds: int, browser: bool) -> str:
    if not 1 <= topics <= 5000:
        raise SystemExit("--topics is 1 to 5000")
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        proc = BrokerProcess(Path(tmp) / "data", http_listen="127.0.0.1:0").start()
        try:
            match = HTTP_LINE.search(proc.output())
            if match is None:
                raise SystemExit(f"no http line in:\n{proc.output()}")
            base = f"http://{match.group(1)}"
            started = time.perf_counter()
            names = _populate(proc.address, topics)
            made_s = time.perf_counter() - started
            topic = names[len(names) // 2]
            _server_times(base, topic, 1)  # warm-up: imports, first reads
            load_before = _load()
            server = _server_times(base, topic, rounds)
            pages = _browser_times(base, topic, max(3, rounds // 4)) if browser else None
            load_after = _load()
        finally:
            proc.terminate()
    from common import machine_line

    rows = [
        f"| `{ROUTES[name].split('?')[0]}` ({name}) | {s['median_ms']:.1f} | {s['max_ms']:.1f} "
        f"| {s['cpu_ms']:.1f} | {s['bytes'] / 1024:.0f} KiB |"
        for name, s in server.items()
    ]
    lines = [
        "## Web console with many topics (benchmarks/bench_console.py)",
        "",
        f"Machine: {machine_line()}",
        "",
        f"{topics} topics of 2 partitions and 10 records each (made in {made_s:.1f} s), one "
        f"consumer group committed on every partition, one queue group on 10 topics. "
        f"{rounds} interleaved rounds; load average (1/5/15 min) {load_before} before, "
        f"{load_after} after. Target: a page in under {TARGET_MS} ms.",
        "",
        "Server, per JSON route over loopback (wall-clock median and worst as the client "
        "sees it; the broker's CPU time per request from its `Server-Timing` header, "
        "median):",
        "",
        "| route | median ms | worst ms | broker CPU ms | answer |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    ]
    if pages is not None:
        lines += [
            "",
            "Headless Chromium, ms from navigation start (median of the rounds): the script "
            "loaded, the last API answer received, the view rendered (the page writes "
            "`updated <time>` into its status line once the view is in the DOM):",
            "",
            "| page | script loaded | data received | shown |",
            "| --- | --- | --- | --- |",
            *[f"| {n} | {a:.0f} | {b:.0f} | {c:.0f} |" for n, (a, b, c) in pages.items()],
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    section = run(args.topics, args.rounds, not args.no_browser)
    print(section)
    if not args.no_write:
        from common import write_section

        write_section("console", section)


if __name__ == "__main__":
    main()
