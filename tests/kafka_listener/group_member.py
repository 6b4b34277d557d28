"""A confluent-kafka group member as its own process (run by test_groups.py).

    python group_member.py BOOTSTRAP TOPIC GROUP

Prints ``ASSIGNED p,p,...`` after every rebalance and ``RECORD partition offset value``
per record, flushing each line; commits after every record.
"""

from __future__ import annotations

import sys

import confluent_kafka as ck


def main() -> None:
    bootstrap, topic, group = sys.argv[1:4]
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 3000,
            "heartbeat.interval.ms": 300,
        }
    )

    def on_assign(c: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        print("ASSIGNED " + ",".join(str(p.partition) for p in partitions), flush=True)

    consumer.subscribe([topic], on_assign=on_assign)
    while True:
        msg = consumer.poll(0.2)
        if msg is None or msg.error() is not None:
            continue
        print(f"RECORD {msg.partition()} {msg.offset()} {msg.value().decode()}", flush=True)
        consumer.commit(msg, asynchronous=False)


if __name__ == "__main__":
    main()
