"""Where a request/reply round trip's milliseconds go, hop by hop (requester -> broker ->
responder -> broker -> requester), at a steady rate.

    python benchmarks/reply_hops.py [--rate 500] [--seconds 5] [--fetch]
    REPO=/path/to/other/checkout python benchmarks/reply_hops.py    # A/B another tree

A diagnostic, not a benchmark of record: like ``latency_hops.py`` it wraps private
functions of the broker and the clients to take timestamps (``time.monotonic_ns``,
system-wide on Linux), so it breaks when they are renamed. Each request's value starts with
its sequence number; every hop decodes the values it handles and logs (hop, time, seq) to a
file per process. Hops, the first time each request (or its reply) is seen there:

  R0 ``Requester.request_async`` called (requester)
  R1 the request is taken off the requests' stream queue by gRPC (requester)
  B1 broker: the request's produce is being handled (``LogServicer._produce`` entered)
  B2 broker: appended (``_produce`` returned; the notifier was woken)
  B3 broker: a queue fetch (or push) acquired it and read its batch (``records_pb``)
  S1 responder: ``poll()`` returned it
  S2 responder: the reply leaves: the reply thread's Produce (``ReplySender._send``), or
     the push session's next message (``PushSession.send``)
  B4 broker: the reply is queued in the inbox (``Inboxes.deliver``)
  B5 broker: the inbox stream took it to send (``Inboxes._take``)
  R2 requester: the reply was decoded by the inbox reader (``Requester._dispatch``)
  R3 requester: the request's future got its reply (the caller's callback)

Prints p50/p90/p99 per hop and in total, and each process's CPU time per request. The
responder is a push member (``QueueConsumer(push=True)``, decision 0037) where the tree has
it, unless ``--fetch``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = os.environ.get("REPO", str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, REPO)
SEQ = struct.Struct("<q")
HOPS = ["R0", "R1", "B1", "B2", "B3", "S1", "S2", "B4", "B5", "R2", "R3"]
now = time.monotonic_ns


class _Log:
    def __init__(self, path: str) -> None:
        self._f = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self._lock = threading.Lock()

    def seqs(self, hop: str, t: int, values: list[bytes | None]) -> None:
        lines = "".join(f"{hop} {t} {SEQ.unpack_from(v)[0]}\n" for v in values if v and len(v) >= 8)
        with self._lock:
            self._f.write(lines)

    def cpu(self, label: str, calls: int | None = None, reads: int | None = None) -> None:
        c = os.times()
        with self._lock:
            self._f.write(f"CPU {label} {c.user + c.system}\n")
            if calls is not None:
                self._f.write(f"CALLS passes {calls}\nCALLS reads {reads}\n")
            self._f.flush()


def _values(batches: list[bytes]) -> list[bytes | None]:
    from logstream.codec import iter_batches

    out: list[bytes | None] = []
    for data in batches:
        for b in iter_batches(data, verify=False):
            out.extend(b.value_list())
    return out


def _produce_values(request) -> list[bytes | None]:  # type: ignore[no-untyped-def]
    if isinstance(request, bytes):  # the client's pipe carries serialized requests
        from logstream.protocol import log_pb2

        request = log_pb2.ProduceRequest.FromString(request)
    return _values([bytes(b) for p in request.partitions for b in p.batches])


# ----------------------------------------------------------------------------- broker
def broker_main(data_dir: str, port: int, log_path: str) -> None:
    import runpy

    from logstream.broker import inboxes, queue_servicer, servicers

    log = _Log(log_path)
    orig_produce = servicers.LogServicer._produce

    def _produce(self, request):  # type: ignore[no-untyped-def]
        t1 = now()
        resp = orig_produce(self, request)
        t2 = now()
        if not any(p.topic.startswith("_inbox.") for p in request.partitions):
            vals = _produce_values(request)
            log.seqs("B1", t1, vals)
            log.seqs("B2", t2, vals)
        return resp

    servicers.LogServicer._produce = _produce
    if hasattr(queue_servicer, "records_pb"):  # since the push session
        from logstream.broker import queue_session

        orig_pb = queue_servicer.records_pb

        def records_pb(queues, group, deliveries):  # type: ignore[no-untyped-def]
            out = orig_pb(queues, group, deliveries)
            log.seqs("B3", now(), _values([qr.batches for qr in out]))
            return out

        queue_servicer.records_pb = queue_session.records_pb = records_pb
    else:
        orig_records = queue_servicer.QueueServicer._records

        def _records(self, group, deliveries):  # type: ignore[no-untyped-def]
            out = orig_records(self, group, deliveries)
            log.seqs("B3", now(), _values([qr.batches for qr in out]))
            return out

        queue_servicer.QueueServicer._records = _records
    orig_deliver = inboxes.Inboxes.deliver

    def deliver(self, topic, partition, batches):  # type: ignore[no-untyped-def]
        t = now()
        n = orig_deliver(self, topic, partition, batches)
        log.seqs("B4", t, _values(list(batches)))
        return n

    inboxes.Inboxes.deliver = deliver
    orig_take = inboxes.Inboxes._take

    def _take(self, box):  # type: ignore[no-untyped-def]
        data = orig_take(self, box)
        if data:
            log.seqs("B5", now(), _values([data]))
        return data

    inboxes.Inboxes._take = _take
    from logstream.broker.queues import QueueManager

    orig_acquire = QueueManager.acquire
    engine_calls = [0]
    manager: list[QueueManager] = []

    def acquire(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        engine_calls[0] += 1
        manager[:] = [self]
        return orig_acquire(self, *args, **kwargs)

    QueueManager.acquire = acquire

    def on_usr1(*_a: object) -> None:
        reads = sum(c.misses for m in manager for c in (m.reads, m.admits))
        log.cpu("broker", engine_calls[0], reads)

    signal.signal(signal.SIGUSR1, on_usr1)
    sys.argv = ["logstream", "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"]
    runpy.run_module("logstream", run_name="__main__")


# ----------------------------------------------------------------------------- responder
def responder_main(addr: str, topic: str, log_path: str, mode: str) -> None:
    from logstream import QueueConsumer
    from logstream.client import reply_sender

    push = {}
    if mode == "push":
        from logstream.client import queue_session

        push = {"push": True}
        orig_session_send = queue_session.PushSession.send

        def send(self, **kw):  # type: ignore[no-untyped-def]
            replies = kw.get("replies") or ()
            if replies:
                log.seqs("S2", now(), _values([r[1] for r in replies]))
            return orig_session_send(self, **kw)

        queue_session.PushSession.send = send

    log = _Log(log_path)
    orig_send = reply_sender.ReplySender._send

    def _send(self, items):  # type: ignore[no-untyped-def]
        log.seqs("S2", now(), _values([i[1] for i in items]))
        return orig_send(self, items)

    reply_sender.ReplySender._send = _send
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGUSR1, lambda *a: log.cpu("responder"))
    with QueueConsumer(
        addr, group="svc", topics=[topic], max_records=100, max_wait_ms=200, **push
    ) as q:
        print("READY", flush=True)
        while not stop:
            msgs = q.poll(0.2)
            log.seqs("S1", now(), [m.value for m in msgs])
            for m in msgs:
                m.reply(m.value)
                m.ack()


# ----------------------------------------------------------------------------- requester
def requester_main(addr: str, topic: str, rate: float, seconds: float, log_path: str,
                   pids: list[int]) -> int:  # fmt: skip
    from logstream import Requester
    from logstream.client import requester as rmod
    from logstream.client.producer import sender as pmod

    log = _Log(log_path)
    orig_dispatch = rmod.Requester._dispatch

    def _dispatch(self, records):  # type: ignore[no-untyped-def]
        log.seqs("R2", now(), _values([records]))
        return orig_dispatch(self, records)

    rmod.Requester._dispatch = _dispatch
    try:  # since the Requester sends on its own errors-only stream
        from logstream.client.request_sender import RequestSender as owner

        name = "_messages"
    except ImportError:
        owner, name = pmod.ProduceStreamPipe, "_requests"
    orig_requests = getattr(owner, name)

    def _requests(self, *args):  # type: ignore[no-untyped-def]
        for req in orig_requests(self, *args):
            log.seqs("R1", now(), _produce_values(req))
            yield req

    setattr(owner, name, _requests)
    n = int(rate * seconds)
    period = int(1e9 / rate)
    done = threading.Event()
    left = [n]
    lock = threading.Lock()
    with Requester(addr) as r:
        r.request(topic, SEQ.pack(-1) + b"w" * 92, timeout=30)

        def cb(seq: int):  # type: ignore[no-untyped-def]
            def f(_fut) -> None:  # type: ignore[no-untyped-def]
                log.seqs("R3", now(), [SEQ.pack(seq)])
                with lock:
                    left[0] -= 1
                    if not left[0]:
                        done.set()

            return f

        for pid in pids:
            os.kill(pid, signal.SIGUSR1)
        log.cpu("requester")
        t0 = now()
        for i in range(n):
            wait = t0 + i * period - now()
            if wait > 0:
                time.sleep(wait / 1e9)
            value = SEQ.pack(i) + b"r" * 92
            log.seqs("R0", now(), [value])
            r.request_async(topic, value, timeout=10).add_done_callback(cb(i))
        done.wait(20)
        log.cpu("requester")
        for pid in pids:
            os.kill(pid, signal.SIGUSR1)
        time.sleep(0.3)
    return n - left[0]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def report(paths: list[str], n: int) -> None:
    first: dict[str, dict[int, int]] = {h: {} for h in HOPS}
    cpu: dict[str, list[float]] = {}
    calls: dict[str, list[int]] = {}
    for p in paths:
        for line in Path(p).read_text().splitlines():
            a, b, c = line.split()
            if a == "CPU":
                cpu.setdefault(b, []).append(float(c))
                continue
            if a == "CALLS":
                calls.setdefault(b, []).append(int(c))
                continue
            seq = int(c)
            if seq >= 0 and seq not in first[a]:
                first[a][seq] = int(b)
    print(f"{n} requests; hop deltas in ms (from the previous hop seen for the request)")
    print("| hop | p50 | p90 | p99 | n |")
    print("| --- | --- | --- | --- | --- |")
    seqs = sorted(first["R0"])
    deltas: dict[tuple[str, str], list[float]] = {}
    for s in seqs:
        seen = [h for h in HOPS if s in first[h]]
        for prev, hop in itertools.pairwise(seen):
            deltas.setdefault((prev, hop), []).append((first[hop][s] - first[prev][s]) / 1e6)
    for (prev, hop), d in sorted(deltas.items(), key=lambda kv: HOPS.index(kv[0][1])):
        print(f"| {prev}->{hop} | {_pct(d, .5):.3f} | {_pct(d, .9):.3f} | {_pct(d, .99):.3f} "
              f"| {len(d)} |")  # fmt: skip
    total = [(first["R3"][s] - first["R0"][s]) / 1e6 for s in seqs if s in first["R3"]]
    print(f"| total R0->R3 | {_pct(total, .5):.3f} | {_pct(total, .9):.3f} | "
          f"{_pct(total, .99):.3f} | {len(total)} |")  # fmt: skip
    for who, (a, b) in ((k, v[:2]) for k, v in cpu.items() if len(v) >= 2):
        print(f"CPU {who}: {(b - a) / n * 1e6:.0f} us/request")
    # passes: QueueManager.acquire calls (a group lock and a __queue_state append each);
    # reads: log reads of the queue read caches (admission and fetch/push)
    for what, (a, b) in ((k, v[:2]) for k, v in calls.items() if len(v) >= 2):
        print(f"broker queue-engine {what}: {(b - a) / n:.2f} per request")
    print(f"load average {os.getloadavg()[0]:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--fetch", action="store_true", help="responder polls with fetches")
    ap.add_argument("--role", default="", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "broker":
        broker_main(a.args[0], int(a.args[1]), a.args[2])
        return 0
    if a.role == "responder":
        responder_main(*a.args)
        return 0
    from benchmarks.peers.servers import free_port

    wd = Path(tempfile.mkdtemp(prefix="logstream-reply-hops-"))
    (wd / "data").mkdir()
    port = free_port()
    addr = f"127.0.0.1:{port}"
    me = [sys.executable, __file__]
    env = dict(os.environ, PYTHONPATH=REPO)
    logs = [str(wd / f"{w}.log") for w in ("broker", "responder", "requester")]
    broker = subprocess.Popen(
        [*me, "--role", "broker", str(wd / "data"), str(port), logs[0]],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    procs = [broker]
    try:
        assert broker.stdout is not None
        for line in broker.stdout:
            if "listening on" in line:
                break
        from logstream import Admin

        with Admin(addr) as admin:
            admin.create_topic("rr", partitions=1)
        has_push = (Path(REPO) / "logstream/client/queue_session.py").exists()
        mode = "push" if has_push and not a.fetch else "fetch"
        print(f"responder: {mode}", flush=True)
        resp = subprocess.Popen(
            [*me, "--role", "responder", addr, "rr", logs[1], mode],
            env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(resp)
        assert resp.stdout is not None
        resp.stdout.readline()
        n = requester_main(addr, "rr", a.rate, a.seconds, logs[2], [broker.pid, resp.pid])
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    report(logs, n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
