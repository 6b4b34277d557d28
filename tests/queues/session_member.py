"""A push-session queue member for the kill -9 test.

``session_member.py ADDRESS GROUP``: joins GROUP with ``push=True``, polls until it holds
five records, prints ``HOLDING <offsets>`` and sleeps until killed (never settles).
"""

from __future__ import annotations

import sys
import time

from logstream import QueueConsumer


def main() -> None:
    address, group = sys.argv[1:3]
    q = QueueConsumer(address, group=group, push=True, max_records=5)
    held: list[int] = []
    deadline = time.monotonic() + 30
    while len(held) < 5 and time.monotonic() < deadline:
        held += [m.offset for m in q.poll(0.5)]
    print("HOLDING", *held, flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
