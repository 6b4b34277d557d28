"""A queue-group worker process for the tests: ``worker.py ADDRESS GROUP MODE OUT STOP``.

``ack``: poll, log ``D partition offset delivery_count time`` per delivery, ack the batch,
commit, log ``C partition offset time`` per confirmed ack (``F ...`` when refused as
already finished), until the file STOP exists. Broker failures are retried.
``hold``: acquire up to 50 records, log ``H partition offset`` for each, then sleep until
killed.
"""

from __future__ import annotations

import os
import sys
import time

from logstream import QueueConsumer, errors


def main() -> None:
    address, group, mode, out, stop = sys.argv[1:6]
    with open(out, "w", buffering=1) as log:
        q = QueueConsumer(address, group=group, max_records=50, request_timeout_ms=5_000)
        log.write("J\n")
        if mode == "hold":
            held: list = []
            while len(held) < 50:
                held += q.poll(0.5)
            for m in held:
                log.write(f"H {m.partition} {m.offset}\n")
            log.write("READY\n")
            time.sleep(600)
            return
        while not os.path.exists(stop):
            try:
                batch = q.poll(0.2)
            except errors.LogstreamError:
                time.sleep(0.1)
                continue
            now = time.time()
            for m in batch:
                log.write(f"D {m.partition} {m.offset} {m.delivery_count} {now}\n")
                m.ack()
            while True:
                try:
                    q.commit()
                    break
                except errors.LogstreamError:
                    time.sleep(0.1)
            now = time.time()
            for m in batch:
                if m.error is None:
                    log.write(f"C {m.partition} {m.offset} {now}\n")
                elif isinstance(m.error, errors.QueueRecordFinishedError):
                    log.write(f"F {m.partition} {m.offset} {now}\n")
        try:
            q.close()
        except errors.LogstreamError:
            pass


if __name__ == "__main__":
    main()
