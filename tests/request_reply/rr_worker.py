"""Request/reply worker processes for the tests.

``rr_worker.py responder ADDRESS TOPIC GROUP NAME STOP [hold] [LEASE_MS]``: a queue-group
member answering ``value + b"|" + NAME`` to each request and acking it, until the file STOP
exists; prints ``READY`` once joined. With ``hold``: prints ``HOLD offset`` for the first
request and then sleeps until killed (never answers). With ``RR_PUSH=1`` in the environment
the member uses a push session (``QueueConsumer(push=True)``).

``rr_worker.py requester ADDRESS TOPIC ID COUNT``: COUNT requests ``ID:i`` in windows of 50
futures; prints one JSON line: ok (replies that echo this requester's own value), bad
(anything else, with the first few), by responder, and what the Requester still holds.
"""

from __future__ import annotations

import json
import os
import sys
import time

from logstream import QueueConsumer, Requester, errors

WINDOW = 50


def responder(
    address: str, topic: str, group: str, name: str, stop: str, mode: str, lease: int
) -> None:
    push = os.environ.get("RR_PUSH") == "1"
    with QueueConsumer(
        address, group=group, topics=[topic], max_wait_ms=100, lease_ms=lease, push=push
    ) as q:
        print("READY", flush=True)
        while not os.path.exists(stop):
            try:
                batch = q.poll(0.1)
            except errors.LogstreamError:
                time.sleep(0.05)
                continue
            for m in batch:
                if mode == "hold":
                    print(f"HOLD {m.offset}", flush=True)
                    time.sleep(600)
                m.reply((m.value or b"") + b"|" + name.encode())
                m.ack()


def requester(address: str, topic: str, ident: str, count: int) -> None:
    ok, bad, by = 0, [], {}
    with Requester(address) as r:
        for start in range(0, count, WINDOW):
            sent = [
                (i, r.request_async(topic, f"{ident}:{i}".encode(), timeout=30))
                for i in range(start, min(start + WINDOW, count))
            ]
            for i, future in sent:
                value = future.result().value or b""
                mine, _, who = value.partition(b"|")
                if mine == f"{ident}:{i}".encode():
                    ok += 1
                    by[who.decode()] = by.get(who.decode(), 0) + 1
                else:
                    bad.append(value.decode(errors="replace"))
        print(
            json.dumps(
                {
                    "ok": ok,
                    "bad": bad[:5],
                    "nbad": len(bad),
                    "by": by,
                    "pending": r.pending,
                    "late": r.late_replies,
                }
            ),
            flush=True,
        )


def main() -> None:
    role = sys.argv[1]
    if role == "responder":
        address, topic, group, name, stop = sys.argv[2:7]
        mode = sys.argv[7] if len(sys.argv) > 7 else "answer"
        lease = int(sys.argv[8]) if len(sys.argv) > 8 else 0
        responder(address, topic, group, name, stop, mode, lease)
    else:
        address, topic, ident, count = sys.argv[2:6]
        requester(address, topic, ident, int(count))


if __name__ == "__main__":
    main()
