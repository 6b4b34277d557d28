"""Waiting on an observable condition in tests, with a deadline instead of a hopeful sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(check: Callable[[], object], timeout: float = 20.0, what: str = "") -> Any:
    """Call ``check`` every 20 ms until it returns something truthy, and return that;
    AssertionError naming ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or check}")
