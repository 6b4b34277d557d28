"""Order events: one stream, three independent readers, and a replay of yesterday.

The shop appends an event to ``order_created`` for every order. Inventory, email and
analytics each read the whole stream in their own consumer group: every group gets every
event, keeps its own committed position, and none slows the others down (unlike a queue,
where each record goes to one worker). Nothing is deleted when read, so when analytics
finds a bug in yesterday's revenue report it replays yesterday's events by timestamp,
without touching the other groups or its own committed position.

The events carry explicit timestamps (two days ago, yesterday, now), so the replay picks
the same orders whenever the example runs.

Run it after ``make run`` (or with LOGSTREAM_BROKER=host:port, as for the CLI)::

    python docs/examples/order_events.py

Expected output::

    7 orders on 3 partitions: 2 from two days ago, 3 from yesterday, 2 from today
    inventory: reserved stock for o-1001 o-1002 o-1003 o-1004 o-1005 o-1006 o-1007
    email: sent a confirmation for o-1001 o-1002 o-1003 o-1004 o-1005 o-1006 o-1007
    analytics: revenue so far 140.00 over 7 orders
    committed lag: inventory 0, email 0, analytics 0
    analytics replays yesterday, from ...T00:00:00Z: o-1003 o-1004 o-1005, revenue 63.00
"""

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from logstream import Admin, Consumer, GroupAdmin, Producer, TopicPartition

ADDR = os.environ.get("LOGSTREAM_BROKER", "127.0.0.1:7070")
RUN = uuid.uuid4().hex[:6]  # fresh names per run, so the example can run again on one broker
ORDERS = f"order_created-{RUN}"
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
YESTERDAY, TWO_DAYS_AGO = TODAY - timedelta(days=1), TODAY - timedelta(days=2)


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


ORDER_LOG = [  # (order, customer, total, when: None = now)
    ("o-1001", "ada", 12.00, TWO_DAYS_AGO + timedelta(hours=10)),
    ("o-1002", "bob", 30.00, TWO_DAYS_AGO + timedelta(hours=16)),
    ("o-1003", "cy", 8.50, YESTERDAY + timedelta(hours=8)),
    ("o-1004", "ada", 40.00, YESTERDAY + timedelta(hours=12, minutes=30)),
    ("o-1005", "dee", 14.50, YESTERDAY + timedelta(hours=19, minutes=45)),
    ("o-1006", "bob", 25.00, None),
    ("o-1007", "cy", 10.00, None),
]


def read_all(group: str, expect: int) -> list[dict]:
    """What one service does: read the stream in its own group (here until ``expect``
    orders or 20 s; a real service runs forever)."""
    orders: list[dict] = []
    with Consumer(ADDR, group=group, auto_offset_reset="earliest") as consumer:
        consumer.subscribe([ORDERS])
        deadline = time.monotonic() + 20
        while len(orders) < expect and time.monotonic() < deadline:
            orders += [json.loads(rec.value) for rec in consumer.poll(timeout=0.5)]
    return sorted(orders, key=lambda o: o["order"])  # the close above committed the positions


def replay(since: datetime, until: datetime) -> list[dict]:
    """Orders with since <= timestamp < until, read without a group (no commits). To move
    a group's own position back instead (the group stopped): ``logstream group reset
    analytics --topic order_created --to-time 2026-12-05T00:00 --execute``."""
    with Consumer(ADDR) as consumer:
        tps = [TopicPartition(ORDERS, p) for p in range(3)]
        consumer.assign(tps)
        start = consumer.offsets_for_times({tp: ms(since) for tp in tps})
        stop = consumer.offsets_for_times({tp: ms(until) for tp in tps})
        for tp in tps:
            consumer.seek(tp, start[tp])
        orders, deadline = [], time.monotonic() + 20
        while any(consumer.position(tp) < stop[tp] for tp in tps) and time.monotonic() < deadline:
            for rec in consumer.poll(timeout=0.5):
                if rec.offset < stop[TopicPartition(rec.topic, rec.partition)]:
                    orders.append(json.loads(rec.value))
    return sorted(orders, key=lambda o: o["order"])


def main() -> int:
    Admin(ADDR).create_topic(ORDERS, partitions=3)
    with Producer(ADDR) as producer:
        for order, customer, total, when in ORDER_LOG:
            event = json.dumps({"order": order, "customer": customer, "total": total})
            at = None if when is None else ms(when)
            producer.send(ORDERS, event.encode(), key=customer.encode(), timestamp_ms=at)
    print("7 orders on 3 partitions: 2 from two days ago, 3 from yesterday, 2 from today")

    seen = {
        name: read_all(f"{name}-{RUN}", expect=7) for name in ("inventory", "email", "analytics")
    }
    print("inventory: reserved stock for", ids(seen["inventory"]))
    print("email: sent a confirmation for", ids(seen["email"]))
    print(f"analytics: revenue so far {revenue(seen['analytics'])} over 7 orders")
    lags = {name: GroupAdmin(ADDR).describe_group(f"{name}-{RUN}").total_lag for name in seen}
    print("committed lag: " + ", ".join(f"{name} {lag}" for name, lag in lags.items()))

    again = replay(YESTERDAY, TODAY)
    since = YESTERDAY.isoformat().replace("+00:00", "Z")
    print(f"analytics replays yesterday, from {since}: {ids(again)}, revenue {revenue(again)}")

    every = " ".join(order for order, *_ in ORDER_LOG)
    if any(ids(got) != every for got in seen.values()) or any(lags.values()):
        print("FAILED: a group missed or repeated an order", file=sys.stderr)
        return 1
    if ids(again) != "o-1003 o-1004 o-1005":
        print("FAILED: the replay picked the wrong orders", file=sys.stderr)
        return 1
    return 0


def ids(orders: list[dict]) -> str:
    return " ".join(o["order"] for o in orders)


def revenue(orders: list[dict]) -> str:
    return f"{sum(o['total'] for o in orders):.2f}"


if __name__ == "__main__":
    sys.exit(main())
