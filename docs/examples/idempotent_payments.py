"""Idempotent payments: charge each payment once although records can arrive twice.

1. The producer retries a request whose answer was lost after the broker stored the
   record. The idempotent producer (on by default) numbers its batches, so the broker
   stores the retry once: nothing to do for you. (Try ``idempotence=False`` below: the
   log then holds p-2 twice.) A TCP relay that drops one answer plays the flaky network.
2. What the producer cannot see: the payments service restarts and sends a payment again
   (a new record), or a worker charges a card and crashes before its ack (the queue group
   hands the record out again after the lease). The consumer deduplicates by payment id,
   in the transaction that records the charge. Worker 1 here really crashes (``os._exit``).

Run it after ``make run`` (or with LOGSTREAM_BROKER=host:port, as for the CLI)::

    python docs/examples/idempotent_payments.py

Expected output::

    producer: the answer to p-2 was lost, the producer sent it again
    log: p-1 p-2 p-3 (the retry was stored once)
    the payments service restarts and sends p-2 again: a new record at offset 3
    worker-1: charged p-1 (ada 10.00), crashes before its ack
    worker-2: offset 0, p-1, delivery 2: already charged, ack
    worker-2: offset 1, p-2, delivery 1: charged bob 25.00
    worker-2: offset 2, p-3, delivery 1: charged cy 7.50
    worker-2: offset 3, p-2, delivery 1: already charged, ack
    ledger: 3 charges, 42.50 in total; nobody was charged twice
"""

import json
import multiprocessing
import os
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import uuid

from logstream import Admin, GroupAdmin, Producer, QueueConsumer

ADDR = os.environ.get("LOGSTREAM_BROKER", "127.0.0.1:7070")


def flaky_relay(marker: bytes) -> tuple[str, threading.Event]:
    """A TCP relay to the broker that drops the answer to the first request containing
    ``marker`` and cuts that connection. Returns its address and an event set once it has."""
    listener, lost = socket.create_server(("127.0.0.1", 0)), threading.Event()

    def pipe(src: socket.socket, dst: socket.socket, marked: threading.Event, up: bool) -> None:
        seen = b""  # the last bytes relayed upwards, for a marker split between reads
        try:
            while data := src.recv(65536):
                if not up and marked.is_set():  # the broker answers: drop it, cut the line
                    lost.set()
                    break
                dst.sendall(data)
                seen = seen[-len(marker) :] + data
                if up and marker in seen and not lost.is_set():
                    marked.set()
        except OSError:
            pass
        for s in (src, dst):  # wakes the other direction's recv too
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            host, port = ADDR.rsplit(":", 1)
            broker, marked = socket.create_connection((host, int(port))), threading.Event()
            for args in [(client, broker, marked, True), (broker, client, marked, False)]:
                threading.Thread(target=pipe, args=args, daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return f"127.0.0.1:{listener.getsockname()[1]}", lost


def payment(pid: str, customer: str, amount: float) -> bytes:
    return json.dumps({"id": pid, "customer": customer, "amount": amount}).encode()


def charge_once(ledger: str, p: dict) -> str:
    """Charge unless this payment id was charged already: the check and the record of the
    charge are one transaction. (With a card provider: pass the id as its idempotency key.)"""
    with sqlite3.connect(ledger) as db:
        try:
            db.execute("INSERT INTO charges VALUES (?, ?)", (p["id"], p["amount"]))
        except sqlite3.IntegrityError:
            return "already charged, ack"
    return f"charged {p['customer']} {p['amount']:.2f}"


def crashing_worker(ledger: str, group: str) -> None:
    with QueueConsumer(ADDR, group=group, max_records=1) as queue:
        msgs = []
        for _ in range(20):
            if msgs := queue.poll(timeout=1):
                break
        p = json.loads(msgs[0].value)
        charge_once(ledger, p)
        who = f"{p['id']} ({p['customer']} {p['amount']:.2f})"
        print(f"worker-1: charged {who}, crashes before its ack", flush=True)
        os._exit(3)  # crash: no ack, no goodbye; the record comes back after the lease


def main() -> int:
    run = uuid.uuid4().hex[:6]  # fresh names per run, so the example can run again on one broker
    topic, group = f"payments-{run}", f"payment-workers-{run}"
    Admin(ADDR).create_topic(topic)
    GroupAdmin(ADDR).create_queue_group(group, topics=[topic], lease_ms=500)

    relay, lost = flaky_relay(b'"p-2"')  # part 1: the producer's own retry
    with Producer(relay, retry_backoff_ms=50) as producer:
        for pay in [("p-1", "ada", 10.00), ("p-2", "bob", 25.00), ("p-3", "cy", 7.50)]:
            producer.send(topic, payment(*pay)).result(timeout=30)
    if lost.is_set():
        print("producer: the answer to p-2 was lost, the producer sent it again")
    log = [json.loads(m.value)["id"] for m in GroupAdmin(ADDR).peek(group, max_records=10)]
    print(f"log: {' '.join(log)} (the retry was stored once)")
    with Producer(ADDR) as restarted:  # it never learnt that p-2 went out
        offset = restarted.send(topic, payment("p-2", "bob", 25.00)).result().offset
    print(f"the payments service restarts and sends p-2 again: a new record at offset {offset}")

    ledger = os.path.join(tempfile.mkdtemp(), "ledger.db")  # part 2: the consumer's side
    with sqlite3.connect(ledger) as db:
        db.execute("CREATE TABLE charges (id TEXT PRIMARY KEY, amount REAL)")
    crash = multiprocessing.Process(target=crashing_worker, args=(ledger, group), daemon=True)
    crash.start()
    crash.join(20)
    outcomes = {}  # (offset, delivery count) -> what worker 2 did
    with QueueConsumer(ADDR, group=group) as queue:
        deadline = time.monotonic() + 20
        while len(outcomes) < 4 and time.monotonic() < deadline:
            for msg in queue.poll(timeout=0.5):
                p = json.loads(msg.value)
                outcomes[msg.offset, msg.delivery_count] = (p["id"], charge_once(ledger, p))
                msg.ack()
    for (off, n), (pid, done) in sorted(outcomes.items()):  # log order, whatever came first
        print(f"worker-2: offset {off}, {pid}, delivery {n}: {done}")

    with sqlite3.connect(ledger) as db:
        count, total = db.execute("SELECT count(*), sum(amount) FROM charges").fetchone()
    ok = lost.is_set() and log == ["p-1", "p-2", "p-3"] and crash.exitcode == 3
    if not ok or (count, total) != (3, 42.5):
        print(f"FAILED: log {log}, {count} charges, {total} in total", file=sys.stderr)
        return 1
    print(f"ledger: {count} charges, {total:.2f} in total; nobody was charged twice")
    return 0


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")  # fresh processes: no gRPC state copied by fork
    sys.exit(main())
