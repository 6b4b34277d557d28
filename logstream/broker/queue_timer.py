"""The queue groups' time-driven work: one thread (``logstream-queues``) for every group.

Every ``queue_tick_interval_ms`` :meth:`QueueTimer.tick` applies what came due in each group
(lease expiry, nack delays, delayed delivery, TTL, dead letters waiting to be written), and
only in a group whose earliest deadline has come: otherwise it costs one comparison per
partition. Once a second :meth:`QueueTimer.housekeeping` removes members not seen for
``max(2 x lease, 60 s)`` (what they hold is released), picks up partitions added to the
groups' topics, and writes the groups' checkpoints. Whatever either frees wakes the group's
waiting fetches through ``wake(group name)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from logstream.broker.queue_state import Managed
from logstream.clock import Clock

log = logging.getLogger("logstream.broker.queues")

MEMBER_TIMEOUT_MIN_MS = 60_000
HOUSEKEEPING_INTERVAL_S = 1.0


class QueueTimer:
    """Ticks and housekeeping for the groups ``groups()`` returns.

    Thread-safety: :meth:`start` runs both on the timer thread; :meth:`tick` and
    :meth:`housekeeping` may also be called from any other thread. Each holds one group's
    lock at a time, for one engine call and one flush, as the request paths do; ``wake`` and
    ``add_partitions`` are called without a group lock held."""

    def __init__(
        self,
        groups: Callable[[], list[Managed]],
        *,
        clock: Clock,
        wake: Callable[[str], None],
        add_partitions: Callable[[Managed], None],
    ) -> None:
        self._groups = groups
        self._clock = clock
        self._wake = wake
        self._add_partitions = add_partitions
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval: float) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="logstream-queues", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, interval: float) -> None:
        last_housekeeping = time.monotonic()
        while not self._stop.wait(interval):
            try:
                self.tick()
                if time.monotonic() - last_housekeeping >= HOUSEKEEPING_INTERVAL_S:
                    last_housekeeping = time.monotonic()
                    self.housekeeping()
            except Exception:
                log.exception("queue timer failed; will retry")

    def tick(self) -> None:
        """Apply what came due in every group (leases, delays, expiry, dead letters)."""
        now = self._clock.now_ms()
        for m in self._groups():
            with m.lock:
                g = m.group
                due = min((w.next_due_ms for _, _, w in g.each_window()), default=now + 1)
                pending = any(w.dead_pending for _, _, w in g.each_window())
                if due > now and not pending:
                    continue
                g.tick()
                g.flush()
            self._wake(g.name)

    def housekeeping(self) -> None:
        """Remove silent members, pick up new partitions, write checkpoints."""
        now = time.monotonic()
        for m in self._groups():
            self._add_partitions(m)
            timeout = max(2 * m.group.settings.lease_ms, MEMBER_TIMEOUT_MIN_MS) / 1000.0
            released = 0
            with m.lock:
                for member, seen in list(m.seen.items()):
                    if now - seen > timeout:
                        released += m.group.leave(member)
                        del m.seen[member]
                        m.client_ids.pop(member, None)
                m.group.maybe_checkpoint()
                m.group.flush()
            if released:
                self._wake(m.group.name)
