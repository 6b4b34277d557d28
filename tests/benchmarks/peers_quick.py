"""``benchmarks/peers/run.py --quick`` for one set of systems, as the driver's smoke tests
run it (no installs, no scale table, results into a file of the test's own)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_quick(systems: str, results: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    script = ROOT / "benchmarks" / "peers" / "run.py"
    options = ["--quick", "--systems", systems, "--no-install", "--no-scale"]
    return subprocess.run(
        [sys.executable, str(script), *options, "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
