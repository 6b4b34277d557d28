"""The peer driver's ``--workloads`` selection and its page cache warm-up before produce."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import run, servers  # noqa: E402
from benchmarks.peers.workload import Result  # noqa: E402


def test_warm_page_cache_measures_and_leaves_no_file():
    before = set(os.listdir(tempfile.gettempdir()))
    us_per_page = servers.warm_page_cache(mb=4)
    assert 0 < us_per_page < 10_000
    left = set(os.listdir(tempfile.gettempdir())) - before
    assert not [f for f in left if f.startswith("logstream-bench-warm-")]


def test_the_warm_up_covers_the_largest_produce():
    assert servers.warmup_mb(1_000, 100) == servers.PAGE_CACHE_WARMUP_MB
    assert servers.warmup_mb(200_000, 1024) * (1 << 20) >= 2 * 200_000 * 1024 - (1 << 20)


def test_logstream_alone_needs_no_peer_server_binary(monkeypatch):
    monkeypatch.setattr(servers.shutil, "which", lambda _name: None)  # nothing installed
    assert servers.missing_binaries([]) == []
    assert servers.missing_binaries(["nats-server"]) == ["nats-server"]
    assert set(servers.missing_binaries()) == set(servers.APT_PACKAGES)


def test_every_row_key_has_a_workload_name():
    keys = ["produce 100B", "replay 1KiB", "group 100B", "queue 100B", "durable produce 100B"]
    keys += ["latency", "request reply", "produce per record", "replay per record"]
    assert {run.workload_of(k) for k in keys} <= set(run.WORKLOADS)
    assert run.workload_of("durable produce 100B") == "durable produce"
    assert run.workload_of("produce 100B") == "produce"


@pytest.mark.slow
def test_only_the_selected_workloads_run(monkeypatch):
    calls: list[str] = []
    warmups: list[int] = []

    def fake_call(module, func, args, timeout, env=None):
        calls.append(func)
        return Result("logstream", func, 10, 1000, 0.01)

    monkeypatch.setattr(run, "call", fake_call)
    monkeypatch.setattr(servers, "warm_page_cache", lambda mb=0: warmups.append(mb) or 1.0)
    plan = run.QUICK
    out = run.run_system("logstream", plan, 1, lambda _msg: None, frozenset({"produce"}))
    assert calls == ["produce", "produce"]  # 100 B and 1 KiB
    assert warmups == [servers.warmup_mb(*plan.small), servers.warmup_mb(*plan.large)]
    assert isinstance(out["produce 100B"], Result)
    for key in ("replay 100B", "group 1KiB", "queue 100B", "latency", "produce per record"):
        assert out[key] == f"n/a ({run.NOT_SELECTED})", key
    out = run.run_system("logstream", plan, 1, lambda _msg: None, frozenset({"produce"}), False)
    assert len(warmups) == 2  # --no-warmup
