"""A consumer-group member process for end-to-end tests.

    python worker.py ADDRESS GROUP OUTFILE [--instance ID] [--session-ms N]

Appends ``R <partition> <offset> <value>`` per processed record and ``A <p,p,...>`` after
each assignment change to OUTFILE (flushed before committing), and commits after processing
every poll (at-least-once). Exits on SIGTERM after closing the consumer.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

sys.path.insert(0, os.environ.get("LOGSTREAM_ROOT", os.getcwd()))

from logstream.client import Consumer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("address")
    ap.add_argument("group")
    ap.add_argument("out")
    ap.add_argument("--instance", default="")
    ap.add_argument("--session-ms", type=int, default=2000)
    args = ap.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    out = open(args.out, "a", buffering=1)  # noqa: SIM115

    def show(_tps: set) -> None:
        parts = ",".join(str(tp.partition) for tp in sorted(c.assignment()))
        out.write(f"A {parts}\n")
        out.flush()

    c = Consumer(
        args.address,
        group=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=args.session_ms,
        instance_id=args.instance,
        fetch_max_wait_ms=100,
        on_assign=show,
        on_revoke=lambda tps: None,
    )
    c.subscribe(["orders"])
    last = None
    while not stop:
        records = c.poll(timeout=0.1)
        for r in records:
            out.write(f"R {r.partition} {r.offset} {r.value.decode()}\n")
        out.flush()
        if records:
            c.commit()
        now = sorted(c.assignment())
        if now != last:
            last = now
            show(set())
    c.close()
    out.write("CLOSED\n")
    out.close()


if __name__ == "__main__":
    main()
