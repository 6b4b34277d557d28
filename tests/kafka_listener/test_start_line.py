"""The broker's start line is printed last: a script that waits for it finds the Kafka
listener already serving (`make run` users point kcat at it right away)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])


def test_the_kafka_listener_serves_before_the_start_line(tmp_path: Path) -> None:
    paths = (ROOT, os.environ.get("PYTHONPATH"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    argv = [sys.executable, "-m", "logstream", "serve", "--listen", "127.0.0.1:0"]
    argv += ["--kafka-listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        before: list[str] = []
        for line in proc.stdout:
            if line.startswith("logstream broker listening on "):
                break
            before.append(line)
        kafka = [ln.split()[4] for ln in before if ln.startswith("logstream kafka listener on ")]
        assert kafka, before
        host, port = kafka[0].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    finally:
        proc.terminate()
        proc.wait(15)
