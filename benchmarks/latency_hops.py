"""Where the milliseconds of end-to-end latency go: one record's hops, producer process ->
broker process -> consumer (this process), at a steady rate (``linger_ms=0``, one partition).

    python benchmarks/latency_hops.py [--rate 2000] [--seconds 5] [--label NAME]
    REPO=/path/to/other/checkout python benchmarks/latency_hops.py    # A/B another tree

A diagnostic, not a benchmark of record: it wraps private functions of the broker, producer
and consumer to take timestamps (``time.monotonic_ns``, system-wide on Linux), so it breaks
when they are renamed. Hops, per record (first time the record's offset is seen there):

  P0 ``send()`` called (stamped in the value)
  P1 the sender thread wrote the request to the ProduceStream pipe (``ProduceStreamPipe.send``)
  P2 gRPC's request-iterator thread took it (``ProduceStreamPipe._requests``)
  B1 broker: ``LogServicer._produce`` entered (the stream's request was read)
  B2 broker: appended and the notifier woken (``_produce`` returned)
  B3 broker: a fetch / subscription read it (``FetchHandler._read_all``)
  B4 broker: the answer built (``servicers._fetch_pb``), about to be sent
  C1 consumer: the answer decoded (``chunks_from_records``, fetcher thread)
  C3 consumer: ``poll()`` returned it (application thread)

Prints p50/p90/p99/p99.9/max per hop and in total, plus each process's CPU time while the
records flowed. Env knobs: LAT_INFLIGHT (producer max_in_flight), LAT_LINGER,
LAT_SWITCH_BROKER / LAT_SWITCH_CLIENT (sys.setswitchinterval, ms), LAT_GRPC_OPT
("name=value;..." extra channel/server options), LAT_NOGC, LAT_DUMP (raw hops as JSON).
See docs/performance.md, Latency.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = os.environ.get("REPO", str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, REPO)
STAMP = struct.Struct("<q")
now = time.monotonic_ns


def _offsets_in(records: bytes) -> list[tuple[int, int]]:
    from logstream.codec import iter_headers

    return [(h.base_offset, h.record_count) for _, h in iter_headers(records)]


# ----------------------------------------------------------------------------- broker
def _grpc_opts() -> list:
    spec = os.environ.get("LAT_GRPC_OPT")  # "name=value;name=value"
    out = []
    for kv in filter(None, (spec or "").split(";")):
        k, v = kv.split("=", 1)
        out.append((k, int(v) if v.lstrip("-").isdigit() else v))
    return out


def _patch_client_opts() -> None:
    opts = _grpc_opts()
    if opts:
        from logstream.client import transport

        transport.CHANNEL_OPTIONS.extend(opts)


def broker_main(data_dir: str, out_path: str) -> None:
    opts = _grpc_opts()
    if opts:
        import grpc

        orig_server = grpc.server

        def server(*a, options=None, **kw):  # type: ignore[no-untyped-def]
            return orig_server(*a, options=list(options or []) + opts, **kw)

        grpc.server = server
    sw = os.environ.get("LAT_SWITCH_BROKER")
    if sw:
        sys.setswitchinterval(float(sw) / 1000)
    from logstream.broker import fetch as fetch_mod
    from logstream.broker import servicers
    from logstream.broker.config import BrokerConfig
    from logstream.broker.server import create_server

    ev: list[tuple[str, int, int, int]] = []  # (hop, t, base, count)
    orig_produce = servicers.LogServicer._produce

    first = []

    def _produce(self, request):  # type: ignore[no-untyped-def]
        t1 = now()
        if not first:
            c = os.times()
            first.append(c.user + c.system)
        resp = orig_produce(self, request)
        t2 = now()
        for p in resp.partitions:
            for r in p.results:
                ev.append(("B1", t1, r.base_offset, 1))
                ev.append(("B2", t2, r.base_offset, 1))
        return resp

    servicers.LogServicer._produce = _produce

    orig_read_all = fetch_mod.FetchHandler._read_all

    def _read_all(self, specs, total_max):  # type: ignore[no-untyped-def]
        t = now()
        res = orig_read_all(self, specs, total_max)
        for o in res[0]:
            if o.records:
                for base, cnt in _offsets_in(o.records):
                    ev.append(("B3", t, base, cnt))
        return res

    fetch_mod.FetchHandler._read_all = _read_all

    orig_fetch_pb = servicers._fetch_pb

    def _fetch_pb(o):  # type: ignore[no-untyped-def]
        pb = orig_fetch_pb(o)
        t = now()
        if o.records:
            for base, cnt in _offsets_in(o.records):
                ev.append(("B4", t, base, cnt))
        return pb

    servicers._fetch_pb = _fetch_pb

    cfg = BrokerConfig(
        data_dir=Path(data_dir), listen="127.0.0.1:0", auto_create_topics=True, log_level="WARNING"
    )
    server, port, _ = create_server(cfg)
    server.start()
    print(f"PORT {port}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    while not stop:
        time.sleep(0.05)
    cpu = os.times()
    server.stop(0.5)
    Path(out_path).write_text(json.dumps({"ev": ev, "cpu": cpu.user + cpu.system - first[0]}))


# ----------------------------------------------------------------------------- producer
def producer_main(addr: str, rate: int, seconds: float, out_path: str) -> None:
    sw = os.environ.get("LAT_SWITCH_CLIENT")
    if sw:
        sys.setswitchinterval(float(sw) / 1000)
    _patch_client_opts()
    from logstream import Producer
    from logstream.client.producer import sender as pmod

    ev: list[tuple[str, int, object]] = []
    orig_send = pmod.ProduceStreamPipe.send

    def send(self, request):  # type: ignore[no-untyped-def]
        ev.append(("P1", now(), request))
        orig_send(self, request)

    pmod.ProduceStreamPipe.send = send

    def _requests(self):  # type: ignore[no-untyped-def]
        while True:
            req = self._queue.get()
            if req is None:
                return
            ev.append(("P2", now(), req))
            yield req

    pmod.ProduceStreamPipe._requests = _requests
    extra = {}
    if os.environ.get("LAT_INFLIGHT"):
        extra["max_in_flight"] = int(os.environ["LAT_INFLIGHT"])
    p = Producer(addr, linger_ms=float(os.environ.get("LAT_LINGER", "0")), **extra)
    p.partitions_for("lat")
    n = int(rate * seconds)
    period = int(1e9 / rate)
    t0 = now() + 50_000_000
    acks = []
    c0 = os.times()
    for i in range(n):
        left = t0 + i * period - now()
        if left > 0:
            time.sleep(left / 1e9)
        ts = now()
        f = p.send("lat", STAMP.pack(ts) + STAMP.pack(i) + b"\0" * 84, partition=0)
        acks.append((ts, f))
    p.flush(60)
    c1 = os.times()
    for _, f in acks:
        f.result()
    p.close()
    out = []
    from logstream.protocol import log_pb2

    for hop, t, req in ev:
        if isinstance(req, bytes):  # the producer serializes its own requests (client/wire.py)
            req = log_pb2.ProduceRequest.FromString(req)
        for part in req.partitions:  # type: ignore[attr-defined]
            for b in part.batches:
                from logstream.codec import decode_batch

                d = decode_batch(b)
                for v in d.value_list():
                    out.append((hop, t, STAMP.unpack_from(v, 8)[0]))
    cpu = c1.user + c1.system - c0.user - c0.system
    Path(out_path).write_text(json.dumps({"p1": out, "cpu": cpu, "reqs": len(ev) // 2}))


# ----------------------------------------------------------------------------- consumer
def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    sw = os.environ.get("LAT_SWITCH_CLIENT")
    if sw:
        sys.setswitchinterval(float(sw) / 1000)

    _patch_client_opts()
    from logstream import Consumer, TopicPartition

    try:  # the module that decodes fetch answers (older trees: the consumer itself)
        from logstream.client import fetcher as cmod

        cmod.chunks_from_records  # noqa: B018
    except (ImportError, AttributeError):
        from logstream.client import consumer as cmod  # type: ignore[no-redef]

    tmp = tempfile.mkdtemp(prefix="lat-")
    bout = os.path.join(tmp, "broker.json")
    pout = os.path.join(tmp, "producer.json")
    env = {**os.environ, "PYTHONPATH": REPO}
    broker = subprocess.Popen(
        [sys.executable, __file__, "--broker", os.path.join(tmp, "data"), bout],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = broker.stdout.readline()  # type: ignore[union-attr]
    port = int(line.split()[1])
    addr = f"127.0.0.1:{port}"

    ev: list[tuple[str, int, int, int]] = []
    orig_cfr = cmod.chunks_from_records

    def cfr(topic, partition, epoch, records, position, *, verify):  # type: ignore[no-untyped-def]
        t = now()
        for base, cnt in _offsets_in(records):
            ev.append(("C1", t, base, cnt))
        return orig_cfr(topic, partition, epoch, records, position, verify=verify)

    cmod.chunks_from_records = cfr

    from logstream import Admin

    with Admin(addr) as admin:
        admin.create_topic("lat", partitions=1)
    n = int(args.rate * args.seconds)
    c = Consumer(addr, auto_offset_reset="earliest", fetch_max_wait_ms=500)
    c.assign([TopicPartition("lat", 0)])
    c.poll(timeout=0.2)
    prod = subprocess.Popen(
        [sys.executable, __file__, "--producer", addr, str(args.rate), str(args.seconds), pout],
        env=env,
    )
    if os.environ.get("LAT_NOGC"):
        import gc

        gc.disable()
    cc0 = os.times()
    c3: dict[int, int] = {}
    p0: dict[int, int] = {}
    deadline = time.monotonic() + args.seconds + 30
    while len(c3) < n and time.monotonic() < deadline:
        recs = c.poll(timeout=1.0, max_records=10_000)
        t = now()
        for r in recs:
            c3[r.offset] = t
            p0[r.offset] = STAMP.unpack_from(r.value, 0)[0]
    cc1 = os.times()
    c.close()
    prod.wait()
    broker.send_signal(signal.SIGTERM)
    broker.wait()
    bdata = json.loads(Path(bout).read_text())
    bev = bdata["ev"]
    ccpu = os.times()
    ccpu = type("C", (), {"user": cc1.user - cc0.user, "system": cc1.system - cc0.system})
    pdata = json.loads(Path(pout).read_text())
    hops: dict[str, dict[int, int]] = {"P0": p0, "C3": c3, "P1": {}, "P2": {}}
    for hop, t, seq in pdata["p1"]:
        hops[hop].setdefault(seq, t)
    for hop, t, base, cnt in bev + ev:
        d = hops.setdefault(hop, {})
        for off in range(base, base + cnt):
            d.setdefault(off, t)  # first time the record reached this hop
    order = ["P0", "P1", "P2", "B1", "B2", "B3", "B4", "C1", "C3"]
    offs = sorted(o for o in c3 if all(o in hops.get(h, {}) for h in order))

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] / 1e6 if xs else float("nan")

    answers = len({t for h, t, _, _ in bev if h == "B4"})
    print(
        f"{args.label} records {len(c3)}/{n}, complete hop chains {len(offs)}; cpu s: "
        f"broker {bdata['cpu']:.2f} producer {pdata['cpu']:.2f} "
        f"consumer {ccpu.user + ccpu.system:.2f}; "
        f"produce requests {pdata['reqs']}, fetch answers with data {answers}"
    )

    def row(name: str, xs: list[int]) -> str:
        qs = " ".join(f"{pct(xs, q):8.3f}" for q in (0.5, 0.9, 0.99, 0.999))
        return f"{name:10s} {qs} {max(xs) / 1e6:8.3f}"

    print(f"{'hop':10s} {'p50':>8s} {'p90':>8s} {'p99':>8s} {'p99.9':>8s} {'max':>8s}  (ms)")
    for a, b in itertools.pairwise(order):
        print(row(f"{a}->{b}", [hops[b][o] - hops[a][o] for o in offs]))
    if os.environ.get("LAT_DUMP"):
        Path(os.environ["LAT_DUMP"]).write_text(
            json.dumps({h: {str(k): v for k, v in d.items()} for h, d in hops.items()})
        )
    tot = [c3[o] - p0[o] for o in c3]
    print(row("TOTAL", tot))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--broker"]:
        broker_main(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["--producer"]:
        producer_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        main()
