"""AppendNotifier (broker/notify.py): wake-ups per partition for long-polling waiters."""

from __future__ import annotations

import asyncio
import threading
import time

from logstream.broker.notify import AppendNotifier

A, B = ("t", 0), ("t", 1)


def test_an_append_wakes_a_waiter_on_its_partition_only() -> None:
    async def main() -> None:
        n = AppendNotifier()
        on_a = asyncio.ensure_future(n.wait([A], n.mark([A]), 10))
        on_b = asyncio.ensure_future(n.wait([B], n.mark([B]), 10))
        await asyncio.sleep(0)
        n.notify(A)
        assert await asyncio.wait_for(on_a, 5) is True
        await asyncio.sleep(0.05)
        assert not on_b.done()
        n.notify(B)
        assert await asyncio.wait_for(on_b, 5) is True
        assert n.registered() == 0

    asyncio.run(main())


def test_a_timeout_returns_false_and_an_earlier_append_returns_at_once() -> None:
    async def main() -> None:
        n = AppendNotifier()
        t0 = time.monotonic()
        assert await n.wait([A], n.mark([A]), 0.05) is False
        assert time.monotonic() - t0 >= 0.04
        seen = n.mark([A])
        n.notify(A)  # between the read and the wait: not lost
        assert await n.wait([A], seen, 10) is True
        assert n.registered() == 0

    asyncio.run(main())


def test_waiters_on_quiet_partitions_leave_nothing_behind() -> None:
    """Woken by A, a waiter on A and B must not stay registered on B (which never moves)."""

    async def main() -> None:
        n = AppendNotifier()
        for _ in range(200):
            w = asyncio.ensure_future(n.wait([A, B], n.mark([A, B]), 10))
            await asyncio.sleep(0)
            n.notify(A)
            assert await asyncio.wait_for(w, 5) is True
        assert n.registered() == 0
        w = asyncio.ensure_future(n.wait([A, B], n.mark([A, B]), 10))
        await asyncio.sleep(0)
        assert n.registered() == 2
        w.cancel()
        await asyncio.gather(w, return_exceptions=True)
        assert n.registered() == 0

    asyncio.run(main())


def test_an_append_from_another_thread_and_close_wake_every_waiter() -> None:
    async def main() -> None:
        n = AppendNotifier()
        woken = asyncio.ensure_future(n.wait([A], n.mark([A]), 10))
        await asyncio.sleep(0)
        t = threading.Thread(target=n.notify, args=(A,))
        t.start()
        assert await asyncio.wait_for(woken, 5) is True
        t.join(5)
        no_keys = asyncio.ensure_future(n.wait([], n.mark([]), 10))
        on_b = asyncio.ensure_future(n.wait([B], n.mark([B]), 10))
        await asyncio.sleep(0)
        n.close()
        assert await asyncio.wait_for(no_keys, 5) is True
        assert await asyncio.wait_for(on_b, 5) is True
        assert await n.wait([B], n.mark([B]), 10) is True  # closed: at once

    asyncio.run(main())
