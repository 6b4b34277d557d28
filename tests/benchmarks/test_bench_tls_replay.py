"""bench_tls_replay against real brokers (plaintext and TLS + token + ACLs): every replay
reads exactly what was produced, the rounds alternate the modes, and the table carries the
per-round ratio to plaintext and the CPU of both sides."""

from __future__ import annotations

import pytest

from benchmarks import bench_tls_replay as bench

pytestmark = pytest.mark.slow


def test_interleaved_replays_through_plaintext_and_tls() -> None:
    order: list[str] = []

    def log(line: str) -> None:  # "  round R 100 B MODE ..." -> first word of MODE
        if line.lstrip().startswith("round"):
            order.append(line.split(" B ", 1)[1].split()[0])

    modes = ["plaintext", "TLS + token + ACLs"]
    results = bench.run_size(modes, 3_000, 100, rounds=2, experiments="", log=log)
    assert order == ["plaintext", "TLS", "TLS", "plaintext"]  # the second round reversed
    for samples in results.values():
        assert len(samples) == 2
        assert all(s.rate > 0 and s.client_ns > 0 and s.broker_ns >= 0 for s in samples)
    text = bench.table({100: results}, 3_000, 2)
    assert "replay of 3,000 x 100 B with" in text  # only the sizes that ran
    rows = [line for line in text.splitlines() if line.startswith("| 100 B")]
    assert len(rows) == 4  # the rates table, then the threads table
    assert "| 1.00x |" in rows[0] and "| 1.00 |" in rows[0]
    secure, plain = results["TLS + token + ACLs"], results["plaintext"]
    assert f"| {bench.paired_ratio(secure, plain):.2f}x |" in rows[1]
    assert f"| {bench.cpu_ns(plain) / bench.cpu_ns(secure):.2f} |" in rows[1]
    # Where the CPU went, by thread: the consumer's fetcher decoded, gRPC's threads read the
    # socket, the broker's event loop sent, and the parts add up to no more than the whole.
    for s in plain + secure:
        assert s.client_parts["fetcher"] > 0 and s.client_parts["gRPC"] > 0
        assert sum(s.client_parts.values()) <= s.client_ns * 1.05
        assert 0 < s.broker_top_ns <= s.broker_ns
        assert s.busiest.startswith(("client ", "broker "))
        assert s.busiest_share > 0 and s.cores > 0 and s.waiting >= 0
    assert [row.split(" | ")[1] for row in rows[2:]] == ["plaintext", "TLS + token + ACLs"]


def test_paired_ratio_is_the_median_of_same_round_ratios() -> None:
    def s(rate: float) -> bench.Sample:
        return bench.Sample(rate, 1.0, 1.0, 0.0)

    plain = [s(100.0), s(50.0), s(200.0)]
    tls = [s(80.0), s(45.0), s(100.0)]  # 0.8, 0.9, 0.5 of the same round
    assert bench.paired_ratio(tls, plain) == pytest.approx(0.8)


def test_record_counts_follow_bench_peers() -> None:
    assert bench.records_for(1_000_000, 100) == 1_000_000
    assert bench.records_for(1_000_000, 1024) == 200_000
    assert bench.records_for(2_000, 1024) == 1_000
