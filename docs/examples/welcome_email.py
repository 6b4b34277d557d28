"""Welcome emails: retry what fails for a while, dead-letter what can never work, redrive.

Signups land on the topic ``signups``; a worker in the queue group ``welcome-email`` sends
each new user a welcome email. The mail server is busy now and then: the worker nacks, and
the group hands the signup out again after a backoff that doubles per delivery (50 ms,
100 ms, ... here; 1 s, 2 s, ... by default). An address the worker finds invalid is
rejected: it goes straight to the dead-letter topic ``welcome-email.dlq`` with the reason.
Here the check has a bug (it refuses addresses with a ``+``); once a fixed worker runs,
``logstream queue redrive`` puts the dead letter back on ``signups`` and it is sent.

Run it after ``make run`` (or with LOGSTREAM_BROKER=host:port, as for the CLI)::

    python docs/examples/welcome_email.py

Expected output::

    worker v1:
      ada@example.com: welcome email sent (delivery 1)
      bob@example.com: mail server busy, nack (delivery 1)
      dan+news@example.com: rejected, invalid address (delivery 1)
      cy@example.com: welcome email sent (delivery 1)
      bob@example.com: mail server busy, nack (delivery 2)
      bob@example.com: welcome email sent (delivery 3)
    dead letter: dan+news@example.com, reason rejected: invalid address
    $ logstream queue redrive welcome-email-... --reason rejected --execute
    redrove 1 records of queue group welcome-email-...
    worker v2:
      dan+news@example.com: welcome email sent (delivery 1)
    queue group: 4 acknowledged, 1 dead-lettered, 2 redelivered
    every user got exactly one welcome email
"""

import os
import subprocess
import sys
import time
import uuid

from logstream import Admin, Consumer, GroupAdmin, Producer, QueueConsumer, TopicPartition

ADDR = os.environ.get("LOGSTREAM_BROKER", "127.0.0.1:7070")
RUN = uuid.uuid4().hex[:6]  # fresh names per run, so the example can run again on one broker
SIGNUPS, GROUP = f"signups-{RUN}", f"welcome-email-{RUN}"

busy_for = {"bob@example.com": 2}  # the mail server refuses bob's email twice
sent: list[str] = []


def send_welcome_email(address: str) -> bool:
    if busy_for.get(address, 0) > 0:
        busy_for[address] -= 1
        return False
    sent.append(address)
    return True


def run_worker(is_valid, until: int) -> None:
    """Work on the queue until ``until`` emails have been sent (or 20 s have passed)."""
    deadline = time.monotonic() + 20
    with QueueConsumer(ADDR, group=GROUP) as queue:
        while len(sent) < until and time.monotonic() < deadline:
            for msg in queue.poll(timeout=0.5):
                address, n = msg.value.decode(), msg.delivery_count
                if not is_valid(address):
                    msg.reject(reason="invalid address")  # can never work: dead-letter it
                    print(f"  {address}: rejected, invalid address (delivery {n})")
                elif not send_welcome_email(address):
                    msg.nack(reason="mail server busy")  # try again after the backoff
                    print(f"  {address}: mail server busy, nack (delivery {n})")
                else:
                    msg.ack()
                    print(f"  {address}: welcome email sent (delivery {n})")
        refused = queue.commit()  # wait until the broker has every outcome
    if refused:
        raise SystemExit(f"the broker refused: {refused}")


def main() -> int:
    Admin(ADDR).create_topic(SIGNUPS)
    GroupAdmin(ADDR).create_queue_group(
        GROUP, topics=[SIGNUPS], backoff_initial_ms=50, backoff_max_ms=1_000, max_deliveries=5
    )
    with Producer(ADDR) as producer:
        for user in ["ada", "bob", "dan+news", "cy"]:
            producer.send(SIGNUPS, f"{user}@example.com".encode())

    print("worker v1:")
    run_worker(lambda address: "@" in address and "+" not in address, until=3)

    with Consumer(ADDR, auto_offset_reset="earliest") as dlq:
        dlq.assign([TopicPartition(f"{GROUP}.dlq", 0)])
        for letter in dlq.poll(timeout=5):
            why = {k: v.decode() for k, v in letter.headers if k.startswith("logstream.dlq.")}
            print(
                f"dead letter: {letter.value.decode()}, reason {why['logstream.dlq.reason']}: "
                f"{why['logstream.dlq.reason-text']}"
            )

    # The fix is deployed; from a terminal: logstream queue redrive GROUP --reason rejected
    # shows what would move (a dry run), and with --execute moves it.
    redrive = ["queue", "redrive", GROUP, "--reason", "rejected", "--execute"]
    print("$ logstream " + " ".join(redrive))
    cli = subprocess.run(
        [sys.executable, "-m", "logstream", "--broker", ADDR, *redrive],
        capture_output=True,
        text=True,
        check=True,
    )
    print(cli.stderr.strip())  # the table of what moved is on stdout, the summary on stderr

    print("worker v2:")
    run_worker(lambda address: "@" in address, until=4)

    total = GroupAdmin(ADDR).describe_queue_group(GROUP).total
    print(
        f"queue group: {total.acknowledged} acknowledged, {total.dead_lettered} dead-lettered, "
        f"{total.redelivered} redelivered"
    )
    expected = ["ada", "bob", "cy", "dan+news"]
    if sorted(sent) != [f"{user}@example.com" for user in expected]:
        print(f"FAILED: sent {sorted(sent)}", file=sys.stderr)
        return 1
    print("every user got exactly one welcome email")
    return 0


if __name__ == "__main__":
    sys.exit(main())
