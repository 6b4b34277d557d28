"""``logstream tail --queue G [--ack]``: work as a member of queue group G and print what
is handed out. With ``--ack`` each printed record is acknowledged; without it the records
are acquired, printed and released when tail exits (they go back to the other workers with
their delivery count raised by one: on a terminal a note says so and points to
``queue peek``, which looks without taking)."""

from __future__ import annotations

import sys
import time

from logstream.cli.context import AppContext
from logstream.cli.options import PrintOptions
from logstream.cli.params import is_tty
from logstream.cli.records import make_formatter
from logstream.types import Record


def run(
    group: str,
    *,
    ack: bool,
    follow: bool,
    limit: int,
    printing: PrintOptions,
    app: AppContext,
    idle_s: float = 1.0,
) -> None:
    """Print up to ``limit`` records (0: no limit), until none came for ``idle_s`` (or, with
    ``follow``, until interrupted); confirm acks and leave at the end."""
    from logstream.client.queue_consumer import QueueConsumer

    formatter, _ = make_formatter(printing, 2, app, sys.stdout)
    # exactly the records printed are acquired: none buffered to be released unseen
    q = QueueConsumer(
        app.broker, group=group, create=False, client_id="logstream-tail", prefetch=False
    )
    printed = 0
    try:
        last = time.monotonic()
        while follow or time.monotonic() - last < idle_s:
            want = min(100, limit - printed) if limit else 100
            batch = q.poll(0.5, max_records=want)
            if batch:
                last = time.monotonic()
            for m in batch:
                rec = Record(
                    m.topic, m.partition, m.offset, m.timestamp_ms, m.key, m.value, m.headers
                )
                text = formatter(rec)
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
                if ack:
                    m.ack()
                printed += 1
            sys.stdout.flush()
            if limit and printed >= limit:
                break
    finally:
        refused = q.close()
        for r in refused:
            sys.stderr.write(
                f"{r.action} of {r.topic}-{r.partition}@{r.offset} refused: {r.error.name}\n"
            )
        if printed and not ack and is_tty(sys.stderr):
            # Looking this way is not free: each run is a delivery of what it printed, and
            # max_deliveries of them dead-letter a record (five looks, by default).
            sys.stderr.write(
                f"released {printed} records to the group; each counts a delivery, and a "
                f"record delivered max_deliveries times is dead-lettered: to look without "
                f"taking, use logstream queue peek {group}\n"
            )
