"""benchmarks/thread_cpu.py: per-thread CPU from schedstat names the thread that spent it."""

from __future__ import annotations

import os
import threading
import time

from benchmarks import thread_cpu


def test_the_spinning_thread_gets_the_cpu_and_the_sleeping_one_none() -> None:
    go, spun, release = threading.Event(), threading.Event(), threading.Event()

    def spin() -> None:  # ~50 ms of CPU on this thread, bounded by a 10 s wall deadline
        go.wait(10.0)
        start, deadline = time.thread_time(), time.monotonic() + 10.0
        while time.thread_time() - start < 0.05 and time.monotonic() < deadline:
            pass
        spun.set()
        release.wait(10.0)

    spinner = threading.Thread(target=spin, name="bench-spinner")
    sleeper = threading.Thread(target=release.wait, args=(10.0,), name="bench-sleeper")
    spinner.start()
    sleeper.start()
    try:
        names = thread_cpu.python_thread_names()
        before = thread_cpu.snapshot(os.getpid(), names)
        go.set()
        assert spun.wait(15.0)
        after = thread_cpu.snapshot(os.getpid(), names)
    finally:
        release.set()
        spinner.join(15.0)
        sleeper.join(15.0)
    d = thread_cpu.delta(before, after)
    assert d[0].name == "bench-spinner" and d[0].cpu_ns >= 45_000_000
    (sleeping,) = [t for t in d if t.name == "bench-sleeper"]
    assert sleeping.cpu_ns < 10_000_000
    assert "MainThread" in {t.name for t in d}


def test_delta_orders_busiest_first_and_counts_new_threads_from_zero() -> None:
    t = thread_cpu.ThreadTimes
    before = {1: t("a", 100, 5), 2: t("b", 50, 0)}
    after = {1: t("a", 130, 5), 2: t("b", 250, 10), 3: t("event_engine", 70, 1)}
    d = thread_cpu.delta(before, after)
    assert [(x.name, x.cpu_ns, x.wait_ns) for x in d] == [
        ("b", 200, 10),
        ("event_engine", 70, 1),
        ("a", 30, 0),
    ]
    assert thread_cpu.grouped([*d, t("event_engine", 5, 0)])["event_engine"] == 75
