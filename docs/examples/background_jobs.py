"""Background jobs: a web handler answers at once and leaves the slow work to a queue.

POST /videos stores a transcoding job on the topic ``videos`` and answers 202 straight
away. Three worker processes compete for the jobs as members of one queue group (each job
goes to exactly one of them, and to another if its worker dies). A worker that finishes a
job acks it and publishes a notification on ``video-ready``, which the web app reads to
tell the user.

Run it after ``make run`` (or with LOGSTREAM_BROKER=host:port, as for the CLI)::

    python docs/examples/background_jobs.py

Expected output::

    POST /videos {"user": "ada", "file": "cat.mov"} -> 202 {"job": "video-1"}
    POST /videos {"user": "bob", "file": "dog.mov"} -> 202 {"job": "video-2"}
    POST /videos {"user": "cy", "file": "owl.mov"} -> 202 {"job": "video-3"}
    POST /videos {"user": "ada", "file": "bee.mov"} -> 202 {"job": "video-4"}
    POST /videos {"user": "bob", "file": "elk.mov"} -> 202 {"job": "video-5"}
    POST /videos {"user": "cy", "file": "fox.mov"} -> 202 {"job": "video-6"}
    notify ada: video-1 (cat.mov) is ready, transcoded by worker-...
    notify bob: video-2 (dog.mov) is ready, transcoded by worker-...
    notify cy: video-3 (owl.mov) is ready, transcoded by worker-...
    notify ada: video-4 (bee.mov) is ready, transcoded by worker-...
    notify bob: video-5 (elk.mov) is ready, transcoded by worker-...
    notify cy: video-6 (fox.mov) is ready, transcoded by worker-...
    6 jobs, each done exactly once
"""

import itertools
import json
import multiprocessing
import os
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from logstream import Admin, Consumer, Producer, QueueConsumer, TopicPartition

ADDR = os.environ.get("LOGSTREAM_BROKER", "127.0.0.1:7070")
# Fresh names per run, so the example can run again on one broker. (Each spawned worker
# process imports this file anew and draws its own RUN: workers get the names as arguments.)
RUN = uuid.uuid4().hex[:6]
JOBS, READY, GROUP = f"videos-{RUN}", f"video-ready-{RUN}", f"transcoders-{RUN}"


def worker(name: str, jobs: str, ready: str, group: str, stop) -> None:
    """One worker process: take one job at a time, do it, notify, ack; until ``stop``
    (a multiprocessing.Event) is set."""
    # max_records=1 and no prefetch: take one job at a time, so idle workers get the rest
    # (prefetch would let a worker that keeps up fetch ahead, up to 64 jobs)
    queue = QueueConsumer(ADDR, group=group, topics=[jobs], max_records=1, prefetch=False)
    with Producer(ADDR) as notify, queue:
        while not stop.is_set():
            for msg in queue.poll(timeout=0.2):
                job = json.loads(msg.value)
                time.sleep(0.1)  # the slow part: transcoding
                done = {**job, "worker": name}
                notify.send(ready, json.dumps(done).encode(), key=job["user"].encode()).result()
                msg.ack()  # only after the notification is stored: a crash before means a retry


def web_app(producer: Producer) -> ThreadingHTTPServer:
    """POST /videos -> store the job, answer 202 with its id; nothing slow happens here."""
    counter = itertools.count(1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            job = {"job": f"video-{next(counter)}", **body}
            producer.send(JOBS, json.dumps(job).encode()).result(timeout=10)  # stored
            self.send_response(202)
            self.end_headers()
            self.wfile.write(json.dumps({"job": job["job"]}).encode())

        def log_message(self, *args: object) -> None:  # keep the example's output quiet
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def main() -> int:
    Admin(ADDR).create_topic(JOBS, partitions=1)  # one partition, still three workers
    Admin(ADDR).create_topic(READY, partitions=1)
    stop = multiprocessing.Event()
    workers = [
        multiprocessing.Process(
            target=worker, args=(f"worker-{i}", JOBS, READY, GROUP, stop), daemon=True
        )
        for i in (1, 2, 3)
    ]
    for w in workers:
        w.start()

    with Producer(ADDR) as producer:
        server = web_app(producer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/videos"
        uploads = ["ada:cat", "bob:dog", "cy:owl", "ada:bee", "bob:elk", "cy:fox"]
        for upload in uploads:
            user, file = upload.split(":")
            body = json.dumps({"user": user, "file": f"{file}.mov"})
            with urllib.request.urlopen(url, data=body.encode()) as resp:
                print(f"POST /videos {body} -> {resp.status} {resp.read().decode()}")
        server.shutdown()

    # The web app's notifier: read video-ready until every job is reported (or give up).
    ready = {}
    tp = TopicPartition(READY, 0)
    with Consumer(ADDR, auto_offset_reset="earliest") as notifications:
        notifications.assign([tp])
        deadline = time.monotonic() + 20
        while len(ready) < len(uploads) and time.monotonic() < deadline:
            for rec in notifications.poll(timeout=0.5):
                done = json.loads(rec.value)
                ready[done["job"]] = done
        stop.set()
        for w in workers:
            w.join(10)
        sent = notifications.end_offsets([tp])[tp]  # notifications ever written: one per job?

    for job_id, done in sorted(ready.items(), key=lambda item: int(item[0].split("-")[1])):
        who = f"{done['user']}: {job_id} ({done['file']})"
        print(f"notify {who} is ready, transcoded by {done['worker']}")
    if len(ready) != len(uploads) or sent != len(uploads) or any(w.exitcode for w in workers):
        print(
            f"FAILED: {len(ready)} of {len(uploads)} jobs done, {sent} notifications",
            file=sys.stderr,
        )
        return 1
    print(f"{len(ready)} jobs, each done exactly once")
    return 0


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")  # fresh processes: no gRPC state copied by fork
    sys.exit(main())
