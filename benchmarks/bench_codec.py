"""Codec throughput: encode and decode whole batches, against a bytes.join baseline.

python benchmarks/bench_codec.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, write_section

from logstream.codec import compression, decode_batch, encode_batch


def _best(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run() -> str:
    rows = []
    n_batches, per = 200, 1000
    for size in (100, 1024):
        values = [bytes([65 + i % 26]) * size for i in range(per)]
        keys = [b"key-%d" % (i % 97) for i in range(per)]
        total = n_batches * per

        def join(values=values) -> None:  # type: ignore[no-untyped-def]
            for _ in range(n_batches):
                b"".join(values)

        def enc(values=values, keys=keys) -> None:  # type: ignore[no-untyped-def]
            for _ in range(n_batches):
                encode_batch(values, keys=keys, timestamps=1_700_000_000_000)

        raw = encode_batch(values, keys=keys, timestamps=1_700_000_000_000)
        zraw = encode_batch(values, keys=keys, timestamps=1, compression_type=compression.ZSTD)

        def dec(raw=raw) -> None:  # type: ignore[no-untyped-def]
            for _ in range(n_batches):
                decode_batch(raw)

        def dec_values(raw=raw) -> None:  # type: ignore[no-untyped-def]
            for _ in range(n_batches):
                decode_batch(raw).value_list()

        def dec_zstd(zraw=zraw) -> None:  # type: ignore[no-untyped-def]
            for _ in range(n_batches):
                decode_batch(zraw)

        t_join = _best(join)
        for label, fn in (
            ("encode (keys+values)", enc),
            ("decode to columns", dec),
            ("decode + values as bytes", dec_values),
            ("decode zstd to columns", dec_zstd),
        ):
            t = _best(fn)
            rows.append(
                f"| {size} B | {label} | {total / t / 1e6:.2f} M rec/s | "
                f"{total * size / t / 1e6:.0f} MB/s | {t_join / t:.2f} |"
            )
    return "\n".join(
        [
            "## Codec",
            "",
            f"Machine: {machine_line()}",
            "",
            "Batches of 1,000 records, best of 5. Baseline: `b''.join` of the same values "
            "(the least any encoder must do); ratio = baseline time / codec time.",
            "",
            "| record | operation | records/s | MB/s | ratio to join |",
            "| --- | --- | --- | --- | --- |",
            *rows,
        ]
    )


if __name__ == "__main__":
    section = run()
    print(section)
    if "--no-write" not in sys.argv:
        write_section("codec", section)
