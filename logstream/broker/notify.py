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
anywhere. An append resolves the futures of its partition's waiters itself when it runs on
their loop, and with one ``call_soon_threadsafe`` per loop otherwise.

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


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


class AppendNotifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._broadcasts = 0
        self._versions: dict[Hashable, int] = {}
        self._closed = False
        # key -> loop -> the futures of that loop's waiters on the key (None: no partitions)
        self._waiters: dict[Hashable, dict[asyncio.AbstractEventLoop, set[asyncio.Future[None]]]]
        self._waiters = {}

    @property
    def closed(self) -> bool:
        return self._closed

    def registered(self) -> int:
        """Waiter registrations held now (one per waiter and key it waits on)."""
        with self._lock:
            return sum(len(f) for by_loop in self._waiters.values() for f in by_loop.values())

    def mark(self, keys: Sequence[Hashable]) -> Mark:
        """The versions of ``keys`` (and the broadcast count) now: pass it to :meth:`wait`."""
        versions = self._versions
        return (self._broadcasts, *(versions.get(k, 0) for k in keys))

    def notify(self, key: Hashable | None = None) -> None:
        """Data was appended to ``key`` (a (topic, partition)); None wakes every waiter."""
        with self._lock:
            if key is None:
                self._broadcasts += 1
                woken = [
                    (loop, list(futures))
                    for by_loop in self._waiters.values()
                    for loop, futures in by_loop.items()
                ]
                self._waiters = {}
            else:
                self._versions[key] = self._versions.get(key, 0) + 1
                by_loop = self._waiters.pop(key, None)
                woken = [(lp, list(f)) for lp, f in by_loop.items()] if by_loop else []
        running = asyncio._get_running_loop()  # a produce on the loop: no self-pipe write
        for loop, futures in woken:
            if loop is running:
                _resolve_all(futures)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_resolve_all, futures)

    async def wait(
        self,
        keys: Sequence[Hashable],
        seen: Mark,
        timeout_s: float,
        future: asyncio.Future[None] | None = None,
    ) -> bool:
        """Park until one of ``keys`` moves past ``seen``, a broadcast, ``close()``, or the
        timeout. Returns True when woken (or already moved), False on timeout.

        The waiter awaits its own future, which the append resolves directly: the task
        runs on the loop's next pass (no shield or ``asyncio.wait`` layers in between,
        each of which would cost a pass of a busy loop). A caller that must also wake for
        something else (a push session: a message from its member) passes a ``future`` of
        this loop and resolves it itself."""
        loop = asyncio.get_running_loop()
        if future is None:
            future = loop.create_future()
        elif future.done():
            return True
        if not self.register(keys, seen, future):
            return True
        timer = loop.call_later(max(timeout_s, 0.0), _resolve, future)
        try:
            await future
        finally:
            timer.cancel()
            self.unregister(keys, future)
        return self._closed or self.mark(keys) != seen

    def register(self, keys: Sequence[Hashable], seen: Mark, future: asyncio.Future[None]) -> bool:
        """Have the next append to one of ``keys`` (or a broadcast) resolve ``future`` (of
        the running loop); False, and nothing registered, when one already moved past
        ``seen`` or the notifier is closed. Pair with :meth:`unregister`. For a waiter that
        is not a coroutine (``kafka/parked_fetch.py``); :meth:`wait` is built on it."""
        loop = future.get_loop()
        waited = list(dict.fromkeys(keys)) or [None]  # None: a broadcast or the timeout
        with self._lock:
            if self._closed or self.mark(keys) != seen:
                return False
            for key in waited:
                self._waiters.setdefault(key, {}).setdefault(loop, set()).add(future)
        return True

    def unregister(self, keys: Sequence[Hashable], future: asyncio.Future[None]) -> None:
        """Drop what :meth:`register` left of ``future`` (an append pops its key's set)."""
        loop = future.get_loop()
        with self._lock:
            for key in dict.fromkeys(keys) if keys else (None,):
                by_loop = self._waiters.get(key)
                mine = None if by_loop is None else by_loop.get(loop)
                if by_loop is None or mine is None:
                    continue
                mine.discard(future)
                if not mine:
                    del by_loop[loop]
                    if not by_loop:
                        del self._waiters[key]

    def close(self) -> None:
        self._closed = True
        self.notify(None)
