"""Request/reply: a pricing service with two responders and a client.

The pricing service is two processes in one queue group on the topic ``price-requests``:
each request goes to one of them, which answers with ``msg.reply(...)`` and then acks (if
it died before the ack, the other one would get the request after the lease). The client
is a ``Requester``: ``request()`` waits for one answer, ``request_async()`` keeps many in
flight, and a request nobody answers raises ``RequestTimeoutError`` after its timeout.
Replies go straight back to the requester that asked (its own in-memory inbox).

Run it after ``make run`` (or with LOGSTREAM_BROKER=host:port, as for the CLI)::

    python docs/examples/request_reply.py

Expected output::

    price of sku 42: 1299 cents
    price of sku 7: 350 cents
    price of sku 999: error unknown sku
    20 requests in flight -> 20 replies, each matching its request
    a topic without responders: no reply within 0.5 s
    done: 23 requests answered by the pricing group (2 processes), every reply checked
"""

import json
import multiprocessing
import os
import sys
import uuid

from logstream import Admin, QueueConsumer, Requester, errors

ADDR = os.environ.get("LOGSTREAM_BROKER", "127.0.0.1:7070")
RUN = uuid.uuid4().hex[:6]  # fresh names per run (spawned processes get them as arguments)
REQUESTS, GROUP, NOBODY = f"price-requests-{RUN}", f"pricing-{RUN}", f"no-service-{RUN}"
PRICES = {42: 1299, 7: 350, 1: 99, 2: 199, 3: 299}


def responder(name: str, topic: str, group: str, ready, stop) -> None:
    """One pricing process: answer every request it gets until ``stop`` is set."""
    with QueueConsumer(ADDR, group=group, topics=[topic]) as queue:
        ready.set()
        while not stop.is_set():
            for msg in queue.poll(timeout=0.2):
                sku = json.loads(msg.value)["sku"]
                if sku in PRICES:
                    answer = {"sku": sku, "price_cents": PRICES[sku], "by": name}
                else:
                    answer = {"sku": sku, "error": "unknown sku", "by": name}
                msg.reply(json.dumps(answer).encode())
                msg.ack()  # sent once the reply is stored


def ask(requester: Requester, sku: int) -> dict:
    reply = requester.request(REQUESTS, json.dumps({"sku": sku}).encode(), timeout=10)
    return json.loads(reply.value)


def main() -> int:
    with Admin(ADDR) as admin:
        admin.create_topic(REQUESTS, partitions=2)
        admin.create_topic(NOBODY, partitions=1)
    stop = multiprocessing.Event()
    readies = [multiprocessing.Event() for _ in range(2)]
    pricing = [
        multiprocessing.Process(
            target=responder,
            args=(f"pricing-{i}", REQUESTS, GROUP, readies[i], stop),
            daemon=True,
        )
        for i in range(2)
    ]
    for p in pricing:
        p.start()
    ok = all(ready.wait(30) for ready in readies)
    by: set[str] = set()
    with Requester(ADDR) as requester:
        for sku in (42, 7, 999):
            answer = ask(requester, sku)
            by.add(answer["by"])
            if "price_cents" in answer:
                shown = f"{answer['price_cents']} cents"
            else:
                shown = f"error {answer['error']}"
            print(f"price of sku {sku}: {shown}")
            ok = ok and answer["sku"] == sku

        skus = [1 + i % 3 for i in range(20)]
        futures = [
            requester.request_async(REQUESTS, json.dumps({"sku": s}).encode(), timeout=10)
            for s in skus
        ]
        answers = [json.loads(f.result().value) for f in futures]
        matching = sum(
            a["sku"] == s and a.get("price_cents") == PRICES[s]
            for a, s in zip(answers, skus, strict=True)
        )
        by.update(a["by"] for a in answers)
        print(f"{len(futures)} requests in flight -> {matching} replies, each matching its request")
        ok = ok and matching == len(skus)

        try:
            requester.request(NOBODY, b'{"sku": 42}', timeout=0.5)
            ok = False
        except errors.RequestTimeoutError:
            print("a topic without responders: no reply within 0.5 s")
    stop.set()
    for p in pricing:
        p.join(10)
    print(f"replies came from {sorted(by)}", file=sys.stderr)  # which one: up to the group
    if not ok or not by <= {"pricing-0", "pricing-1"} or any(p.exitcode for p in pricing):
        print("FAILED: a reply was missing or wrong", file=sys.stderr)
        return 1
    print("done: 23 requests answered by the pricing group (2 processes), every reply checked")
    return 0


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")  # fresh processes: no gRPC state copied by fork
    sys.exit(main())
