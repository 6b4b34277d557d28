"""Shared benchmark plumbing: the machine line and section-wise writing of RESULTS.md.

Each benchmark script owns one section of ``benchmarks/RESULTS.md`` between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` markers and rewrites only that section,
so scripts can run separately without clobbering each other's figures.
"""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
_PREAMBLE = """# Benchmark results

Every figure is measured on the machine named in its section, in one run, and reported
next to a baseline measured in the same run (absolute numbers drift on shared machines;
ratios travel better). Regenerate with `make bench` (storage, codec, end to end, groups)
and `make bench-peers` (side by side with Redis Streams and NATS JetStream).
"""


def machine_line() -> str:
    """CPU model, cores, memory, kernel and Python: the context every number needs."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )


def write_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md with ``markdown``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else _PREAMBLE
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def rate(count: float, seconds: float) -> str:
    """Human records/s or bytes/s figure."""
    value = count / seconds if seconds > 0 else float("inf")
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"
