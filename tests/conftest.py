"""Shared fixtures. Each test package keeps its own conftest for heavier fixtures."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI machines are small and shared: keep property tests deterministic in count, not in time.
settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
