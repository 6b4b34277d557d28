"""Shared fixtures. Each test package keeps its own conftest for heavier fixtures."""

from __future__ import annotations

import os
from typing import Any

import pytest

# Tests run brokers in-process (gRPC's event-engine threads) and fork this process (pexpect,
# multiprocessing); with gRPC's fork handlers on, a forked child that closes its descriptors
# before exec can abort in the inherited poller (epoll_wait: EBADF). The children exec at
# once and never use the parent's gRPC, so the handlers are turned off before grpc loads.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from hypothesis import HealthCheck, settings

# CI machines are small and shared: keep property tests deterministic in count, not in time.
settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """In CI every tool a test needs is installed by `make test`, so a skip there means a
    missing install step: report it as a failure instead of letting it pass unseen."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (a missing install step?): {report.longrepr}"
