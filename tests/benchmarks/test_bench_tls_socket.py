"""bench_tls_socket: a plain and a TLS stream over loopback deliver every byte and report
both sides' CPU per byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_tls_socket as bench

pytestmark = pytest.mark.slow


def test_both_modes_stream_every_byte_and_report_cpu(tmp_path: Path) -> None:
    medians = bench.run(8 * bench.CHUNK, 2, bench.dev_certs(tmp_path))
    assert set(medians) == {"plain", "TLS"}
    for m in medians.values():
        assert m["sender"] >= 0 and m["receiver"] > 0
