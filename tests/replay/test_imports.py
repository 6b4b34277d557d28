"""Importing the replay package loads neither the client (grpc) nor storage: a source
imports its lower layer when it is made."""

from __future__ import annotations

import subprocess
import sys


def test_importing_replay_loads_no_client_storage_or_grpc() -> None:
    code = (
        "import sys, logstream.replay; "
        "print(sorted(m for m in ('logstream.client', 'logstream.storage', 'grpc') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
