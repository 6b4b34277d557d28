"""Thumbnails: jobs that are worthless when stale (a TTL), and a retry scheduled for later.

A photo app queues a thumbnail job per upload. A thumbnail nobody waits for any more is not
worth making, so each job carries a TTL (``ttl_ms``): a queue group never hands out an
expired job; it goes to the group's dead-letter topic with reason ``expired``. When the
original is not in storage yet, the worker does not spin on it: it schedules a retry with
``delay_ms`` (the job's remaining TTL goes with it) and acks the attempt. The retry is not
handed out before its time and does not hold back the jobs behind it.

Run it after ``make run`` (or with LOGSTREAM_BROKER=host:port, as for the CLI)::

    python docs/examples/thumbnails_ttl.py

Expected output::

    queued photo-1 (ttl 10s), photo-2 (ttl 10s), photo-3 (ttl 0.3s)
    workers start 0.5s later (a deploy)
    photo-1: thumbnail made
    photo-2: original not uploaded yet, retry in 0.5s
    photo-2: thumbnail made on attempt 2, ... after the first
    photo-3: expired before a worker saw it, in thumbnailers-....dlq (reason expired)
    group: 3 acked, 1 expired, 0 waiting
"""

import os
import sys
import time
import uuid

from logstream import Admin, Consumer, GroupAdmin, Producer, QueueConsumer, TopicPartition

ADDR = os.environ.get("LOGSTREAM_BROKER", "127.0.0.1:7070")
RUN = uuid.uuid4().hex[:6]  # fresh names per run, so the example can run again on one broker
JOBS, GROUP = f"thumbnails-{RUN}", f"thumbnailers-{RUN}"
DLQ = f"{GROUP}.dlq"  # the group's default dead-letter topic
RETRY_MS = 500


def in_storage(photo: str, attempt: int) -> bool:
    """Stand-in for the object store: photo-2's original arrives a moment late."""
    return photo != "photo-2" or attempt > 1


def main() -> int:
    Admin(ADDR).create_topic(JOBS)
    GroupAdmin(ADDR).create_queue_group(GROUP, topics=[JOBS])
    with Producer(ADDR) as jobs:
        for photo, ttl_ms in (("photo-1", 10_000), ("photo-2", 10_000), ("photo-3", 300)):
            jobs.send(JOBS, photo.encode(), headers={"attempt": b"1"}, ttl_ms=ttl_ms)
    print("queued photo-1 (ttl 10s), photo-2 (ttl 10s), photo-3 (ttl 0.3s)")
    time.sleep(0.5)  # the workers are being deployed: photo-3's TTL runs out meanwhile
    print("workers start 0.5s later (a deploy)")

    made: dict[str, int] = {}
    first_try: dict[str, float] = {}
    with Producer(ADDR) as retries, QueueConsumer(ADDR, group=GROUP) as queue:
        deadline = time.monotonic() + 20
        while len(made) < 2 and time.monotonic() < deadline:
            for job in queue.poll(timeout=0.5):
                photo, headers = job.value.decode(), dict(job.headers)
                attempt = int(headers["attempt"])
                if in_storage(photo, attempt):
                    made[photo] = attempt
                    if attempt == 1:
                        print(f"{photo}: thumbnail made")
                    else:
                        waited = time.monotonic() - first_try[photo]
                        after = f"{waited:.1f}s after the first"
                        print(f"{photo}: thumbnail made on attempt {attempt}, {after}")
                        if not RETRY_MS / 1000 <= waited < RETRY_MS / 1000 + 1.0:
                            print(f"FAILED: the retry came after {waited:.3f}s", file=sys.stderr)
                            return 1
                else:
                    first_try[photo] = time.monotonic()
                    left_ms = int(headers["logstream-expires-at"]) - int(time.time() * 1000)
                    retry = {"attempt": str(attempt + 1).encode()}
                    retries.send(JOBS, job.value, headers=retry, delay_ms=RETRY_MS, ttl_ms=left_ms)
                    retries.flush()  # the retry is stored before this attempt is acked
                    print(f"{photo}: original not uploaded yet, retry in {RETRY_MS / 1000}s")
                job.ack()
        refused = queue.commit()

    with Consumer(ADDR, auto_offset_reset="earliest") as dead:
        dead.assign([TopicPartition(DLQ, 0)])
        letters = dead.poll(timeout=5.0)
    for letter in letters:
        reason = dict(letter.headers)["logstream.dlq.reason"].decode()
        photo = letter.value.decode()
        print(f"{photo}: expired before a worker saw it, in {DLQ} (reason {reason})")
    total = GroupAdmin(ADDR).describe_queue_group(GROUP).total
    print(f"group: {total.acknowledged} acked, {total.expired} expired, {total.depth} waiting")
    if made != {"photo-1": 1, "photo-2": 2} or refused or len(letters) != 1 or total.expired != 1:
        problem = f"made {made}, refused {refused}, {len(letters)} dead letters"
        print(f"FAILED: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
