"""Observable consumer states for tests, instead of sleeps that hope a state was reached.

    with Consumer(address) as c:
        c.assign([tp]); c.position(tp)
        assert wait_fetch_parked(c)      # the fetcher's long poll / stream is open now
        producer.send(...)

The consumer's fetcher is reached through the consumer it belongs to; nothing here changes
what the consumer does.
"""

from __future__ import annotations

from logstream.client.consumer import Consumer


def wait_fetch_parked(consumer: Consumer, *, direct: bool = False, timeout: float = 10.0) -> bool:
    """Wait until the consumer has a fetch call or ``Subscribe`` stream in flight; with
    ``direct``, the stream of the thread iterating the consumer. False on timeout."""
    return consumer._fetcher.wait_parked(direct=direct, timeout=timeout)


def wait_fetcher_idle(consumer: Consumer, timeout: float = 10.0) -> bool:
    """Wait until the consumer's prefetch thread waits for work: nothing to fetch, the
    buffer full, or an iteration reading on its own thread. False on timeout."""
    return consumer._fetcher.wait_idle(timeout)
