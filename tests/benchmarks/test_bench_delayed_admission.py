"""bench_delayed's admission measurement runs against the current queue_admit signature (it
silently rotted once when admit_new gained its FetchCache argument)."""

from __future__ import annotations

from benchmarks.bench_delayed import admission_cpu


def test_admission_cpu_measures_every_kind_of_batch() -> None:
    per_record_us = admission_cpu(records=2_000, rounds=1)
    assert set(per_record_us) == {"no headers", "an unrelated header", "a schedule header"}
    assert all(us > 0 for us in per_record_us.values()), per_record_us
