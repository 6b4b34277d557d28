"""Per-thread CPU of a process from ``/proc/PID/task/*/schedstat``: where a workload's CPU
goes, thread by thread, and whether one thread is its serial bottleneck.

``schedstat`` gives each thread's time on a CPU and its time runnable but waiting for one,
in nanoseconds (the 10 ms ticks of ``/proc/PID/stat`` are too coarse for a 0.2 s replay).
A thread that ends between two snapshots is not counted: snapshot around a part during
which the threads of interest live (gRPC's event-engine threads and a consumer's fetcher
do, for a replay).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ThreadTimes:
    name: str  # the Python thread name, or the OS name (``comm``) of a thread from C
    cpu_ns: int
    wait_ns: int  # runnable, waiting for a CPU


def snapshot(pid: int, names: dict[int, str] | None = None) -> dict[int, ThreadTimes]:
    """Every live thread of ``pid`` by thread id; ``names`` overrides ``comm`` by id."""
    names = names or {}
    out: dict[int, ThreadTimes] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            tid = int(task.name)
            comm = (task / "comm").read_text().strip()
            run, wait, _slices = (task / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue  # ended while listed
        out[tid] = ThreadTimes(names.get(tid, comm), int(run), int(wait))
    return out


def python_thread_names() -> dict[int, str]:
    """This process's Python threads: native id -> name (``MainThread``, ...)."""
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


def delta(before: dict[int, ThreadTimes], after: dict[int, ThreadTimes]) -> list[ThreadTimes]:
    """CPU and wait of each thread between two snapshots, busiest first (threads started
    in between count from zero)."""
    out = []
    for tid, t in after.items():
        b = before.get(tid)
        cpu = t.cpu_ns - (b.cpu_ns if b else 0)
        wait = t.wait_ns - (b.wait_ns if b else 0)
        out.append(ThreadTimes(t.name, cpu, wait))
    return sorted(out, key=lambda t: -t.cpu_ns)


def grouped(threads: list[ThreadTimes]) -> dict[str, int]:
    """CPU ns summed by thread name (gRPC starts several threads of one name)."""
    out: dict[str, int] = {}
    for t in threads:
        out[t.name] = out.get(t.name, 0) + t.cpu_ns
    return out
