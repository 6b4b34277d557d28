"""Wake-ups for long-polling fetches and subscriptions, per partition.

Every append bumps its partition's version and wakes the coroutines waiting on that
partition; a waiter re-reads its partitions and waits again if it still has too little.
No sleeping loops: a fetch that waits 5 s for data returns as soon as a produce lands.
A waiter takes a :meth:`mark` of the versions of the partitions it reads *before* reading
them, then waits for any of them to move (an append between its read and its wait is not
lost). A broadcast (:meth:`notify` without a key: a topic deleted; :meth:`close`:
shutdown) wakes every waiter.

Per-partition keys matter at scale: with thousands of idle subscriptions, one broker-wide
wake-up per append would make every one of them re-read its partitions on every append
anywhere. Waiters of one loop share one future per partition, so an append costs one
``call_soon_threadsafe`` per loop that has waiters on its partition.

Thread-safe: ``notify`` may be called from any thread or from the loop's own thread.
``close()`` wakes everybody for good: waits return at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Sequence

Mark = tuple[int, ...]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AppendNotifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._broadcasts = 0
        self._versions: dict[Hashable, int] = {}
        self._closed = False
        self._futures: dict[Hashable, dict[asyncio.AbstractEventLoop, asyncio.Future[None]]] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    def mark(self, keys: Sequence[Hashable]) -> Mark:
        """The versions of ``keys`` (and the broadcast count) now: pass it to :meth:`wait`."""
        versions = self._versions
        return (self._broadcasts, *(versions.get(k, 0) for k in keys))

    def notify(self, key: Hashable | None = None) -> None:
        """Data was appended to ``key`` (a (topic, partition)); None wakes every waiter."""
        with self._lock:
            if key is None:
                self._broadcasts += 1
                woken = [f for by_loop in self._futures.values() for f in by_loop.items()]
                self._futures = {}
            else:
                self._versions[key] = self._versions.get(key, 0) + 1
                by_loop = self._futures.pop(key, None)
                woken = list(by_loop.items()) if by_loop else []
        running = asyncio._get_running_loop()  # a produce on the loop: no self-pipe write
        for loop, future in woken:
            if loop is running:
                _resolve(future)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, keys: Sequence[Hashable], seen: Mark, timeout_s: float) -> bool:
        """Park until one of ``keys`` moves past ``seen``, a broadcast, ``close()``, or the
        timeout. Returns True when woken (or already moved), False on timeout."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed or self.mark(keys) != seen:
                return True
            futures = []
            for key in dict.fromkeys(keys):
                by_loop = self._futures.setdefault(key, {})
                future = by_loop.get(loop)
                if future is None:
                    future = by_loop[loop] = loop.create_future()
                futures.append(future)
        if not futures:  # no partitions: only a broadcast or the timeout ends the wait
            futures.append(loop.create_future())
            with self._lock:
                self._futures.setdefault(None, {})[loop] = futures[0]
        # shield: the futures are shared, one waiter's timeout or cancellation is its own
        shielded = [asyncio.shield(f) for f in futures]
        done, pending = await asyncio.wait(
            shielded, timeout=max(timeout_s, 0.0), return_when=asyncio.FIRST_COMPLETED
        )
        for p in pending:
            p.cancel()
        return bool(done) or self._closed or self.mark(keys) != seen

    def close(self) -> None:
        self._closed = True
        self.notify(None)
