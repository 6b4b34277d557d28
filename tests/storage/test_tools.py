"""tools/dump_segment.py and tools/verify_log.py run as scripts against real data dirs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from storage_helpers import make_batch

from logstream.storage import LogManager

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOLS / tool), *args], capture_output=True, text=True, timeout=60
    )


def test_verify_and_dump_a_healthy_and_a_damaged_dir(tmp_path):
    with LogManager.open(tmp_path) as m:
        m.create_topic("t", 2, {"segment_bytes": 1024})
        for i in range(40):
            m.get_log("t", i % 2).append(
                make_batch(2, tag=i, producer_id=1, epoch=0, sequence=2 * (i // 2))
            )
    ok = run("verify_log.py", str(tmp_path))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    seg = tmp_path / "t-0" / "00000000000000000000.log"
    dump = run("dump_segment.py", str(seg))
    assert dump.returncode == 0 and "base_offset=0 count=2" in dump.stdout
    assert "crc=ok" in dump.stdout and "relative_offset=0 position=0" in dump.stdout
    raw = bytearray(seg.read_bytes())
    raw[100] ^= 0xFF
    seg.write_bytes(raw)
    bad = run("verify_log.py", str(tmp_path))
    assert bad.returncode == 1 and "CRC mismatch" in bad.stdout
    assert run("dump_segment.py", str(seg)).returncode == 1
