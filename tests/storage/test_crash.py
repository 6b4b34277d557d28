"""Real crashes: a child process appends in a loop and is killed with SIGKILL at random moments.

Every batch whose append() returned (the child printed it) must be readable after reopening,
and no partial batch may ever be visible, for both the ``every_batch`` and ``never`` flush
policies (a process crash leaves the page cache intact). Marked slow; a few seeded rounds.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from logstream.codec import iter_batches
from logstream.storage import LogManager

ROOT = str(Path(__file__).resolve().parents[2])

CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from logstream.codec import encode_batch
    from logstream.storage import LogManager

    path, policy, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    segment_bytes = int(sys.argv[4])
    m = LogManager.open(path)
    if "t" not in m.topics():
        m.create_topic("t", 1, {{"segment_bytes": segment_bytes, "flush_policy": policy}})
    log = m.get_log("t", 0)
    print("ready", log.log_end_offset, flush=True)
    i = 0
    while True:
        n = 1 + (i * 7 + seed) % 40
        values = [b"%d-%d" % (seed, j) * (1 + j % 5) for j in range(n)]
        r = log.append(encode_batch(values, timestamps=1000 + i))
        print(r.base_offset, r.last_offset, flush=True)
        i += 1
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("policy", "segment_bytes"),
    [
        ("every_batch", 65536),
        ("never", 65536),
        # Large segments: the kill lands with prefaulted (populated, zero) pages past the
        # log end of the active segment (storage/prefault.py).
        ("never", 8 << 20),
    ],
)
def test_sigkill_never_loses_an_acknowledged_batch(tmp_path, policy, segment_bytes):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=ROOT))
    data = tmp_path / "data"
    rng = random.Random(hash(policy) & 0xFFFF)
    acked_end = 0
    for round_no in range(4):
        child = subprocess.Popen(
            [sys.executable, str(script), str(data), policy, str(round_no), str(segment_bytes)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        first = child.stdout.readline().split()
        assert first[0] == "ready", first
        assert int(first[1]) >= acked_end  # the child's own recovery kept everything
        time.sleep(rng.uniform(0.02, 0.4))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        lines = [ln.split() for ln in out.splitlines() if ln.strip()]
        complete = [ln for ln in lines if len(ln) == 2]  # the last line may be torn
        if complete:
            acked_end = max(acked_end, int(complete[-1][1]) + 1)
        with LogManager.open(data) as m:
            log = m.get_log("t", 0)
            report = m.recovery_reports[("t", 0)]
            assert not report.clean_shutdown
            assert log.log_end_offset >= acked_end, (round_no, report)
            offsets = []
            blob = log.read(0, 1 << 30)
            for batch in iter_batches(blob):  # verifies every CRC
                offsets.extend(int(o) for o in batch.offsets)
            assert offsets == list(range(log.log_end_offset))
            assert sum(b.header.batch_length for b in iter_batches(blob)) == len(blob)
        # reopen after a clean close: nothing to scan, same content
        (data / ".clean-shutdown").unlink()  # next child starts from a crash state again
