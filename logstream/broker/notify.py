"""Wake-ups for long-polling fetches and subscriptions: a broker-wide version counter.

Every append bumps ``version`` and wakes all waiters; a waiter re-reads its partitions and
waits again if it still has too little. No sleeping loops: a fetch that waits 5 s for data
returns as soon as a produce lands. One condition for the whole broker keeps a fetch over
many partitions simple (it waits on one thing); the cost is a spurious wake-up of fetches
for other partitions, each of which re-reads its partitions (a few mmap lookups).

Thread-safe. ``close()`` wakes everybody for good (shutdown): waits return at once.
"""

from __future__ import annotations

import threading
import time


class AppendNotifier:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._version = 0
        self._closed = False

    @property
    def version(self) -> int:
        return self._version

    @property
    def closed(self) -> bool:
        return self._closed

    def notify(self) -> None:
        """Data was appended (or a waiter's call was cancelled): wake every waiter."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def wait(self, seen_version: int, timeout_s: float) -> bool:
        """Block until the version moves past ``seen_version``, ``close()``, or the timeout.

        Returns True when woken by a change (or close), False on timeout.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._version == seen_version and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._version += 1
            self._cond.notify_all()
