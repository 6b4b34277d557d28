"""`make bench`: run every in-tree benchmark and rewrite its section of RESULTS.md.

Each module exposes ``run() -> str`` (a markdown section). Modules that are missing or fail
are reported and skipped so one broken benchmark does not hide the others' figures; the
exit code is 1 if any failed.

    python benchmarks/run_all.py [name ...]     # names: codec storage e2e groups rss metrics kafka
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import write_section  # noqa: E402

SUITES = {
    "codec": "bench_codec",
    "storage": "bench_storage",
    "e2e": "bench_e2e",
    "groups": "bench_groups",
    "rss": "bench_rss",
    "metrics": "bench_metrics",
    "kafka": "bench_kafka",
}


def main(argv: list[str]) -> int:
    names = argv or list(SUITES)
    failed = []
    for name in names:
        module_name = SUITES.get(name)
        if module_name is None:
            print(f"unknown benchmark {name!r}; choose from {', '.join(SUITES)}", file=sys.stderr)
            return 2
        if not (HERE / f"{module_name}.py").exists():
            print(f"[{name}] not present, skipped")
            continue
        print(f"[{name}] running ...", flush=True)
        started = time.perf_counter()
        try:
            section = importlib.import_module(module_name).run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        write_section(name, section)
        print(section)
        print(f"[{name}] done in {time.perf_counter() - started:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
