"""The Kafka listener's own cost per request on the latency path, without any Kafka client.

    python benchmarks/bench_kafka_requests.py [--rounds 3000] [--pairs 3] [--base PATH]

One round is what one record costs the listener at low rates: a Fetch (v11, one partition,
``max_wait`` 500 ms, ``min_bytes`` 1) is parked on one connection, a Produce (v8, acks=1,
one record of 100 B in a v2 record batch) is sent on another, and the round ends when
both answers are read. The client is plain sockets in lock-step, so what is measured is
the listener: the broker process's CPU time per round (from /proc; its other threads
are idle but for timers, and the client is not in it) and the time from sending the
Produce to reading the Fetch answer that carries the record (p50 / p99, microseconds;
the Produce answer is read after it), with the 1-minute load average. With ``--base`` the rounds
run as interleaved A/B pairs against another checkout's broker (A) and this tree's (B),
each against a fresh broker process. ``--burst K``: each round sends K one-record
Produce requests in one write (pipelined) after the Fetch is parked, and reports when the
fetch answers and how many produce answers were already written by then.
``--replay N``: N records of 100 B are produced with confluent-kafka first, then read back
from offset 0 by lock-step Fetch requests of up to 1 MiB (what a replaying consumer sends,
without the consumer's own cost); reported: the broker's CPU time per replayed record and
the records per second of that loop.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import kafka_adapter, servers  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
TOPIC = "rounds"
SIZE = struct.Struct(">i")


def _frame(api_key: int, version: int, correlation_id: int, **body: object) -> bytes:
    from kio.index import load_request_schema
    from kio.serial import entity_writer

    from logstream.kafka.wire import build

    cls = load_request_schema(api_key, version)
    header_cls = cls.__header_schema__
    out = io.BytesIO()
    entity_writer(header_cls)(
        out,
        header_cls(
            request_api_key=api_key,
            request_api_version=version,
            correlation_id=correlation_id,
            client_id="bench",
        ),
    )
    entity_writer(cls)(out, build(cls, **body))
    raw = out.getvalue()
    return SIZE.pack(len(raw)) + raw


def _record_batch(value: bytes) -> bytes:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    b = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    b.append(0, timestamp=int(time.time() * 1000), key=None, value=value, headers=[])
    return bytes(b.build())


def produce_frame(correlation_id: int, value: bytes) -> bytes:
    from kio.index import load_request_schema

    mod = sys.modules[load_request_schema(0, 8).__module__]
    part = mod.PartitionProduceData(index=0, records=_record_batch(value))
    topic = mod.TopicProduceData(name=TOPIC, partition_data=(part,))
    return _frame(0, 8, correlation_id, acks=1, timeout=30_000, topic_data=(topic,))


def fetch_frame(correlation_id: int, offset: int) -> bytes:
    from kio.index import load_request_schema

    mod = sys.modules[load_request_schema(1, 11).__module__]
    part = mod.FetchPartition(
        partition=0,
        current_leader_epoch=-1,
        fetch_offset=offset,
        log_start_offset=-1,
        partition_max_bytes=1 << 20,
    )
    return _frame(
        1,
        11,
        correlation_id,
        replica_id=-1,
        max_wait=500,
        min_bytes=1,
        max_bytes=50 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(mod.FetchTopic(topic=TOPIC, partitions=(part,)),),
        forgotten_topics_data=(),
        rack_id="",
    )


def _read_frame(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the listener closed the connection")
            buf += chunk
        return bytes(buf)

    return exactly(SIZE.unpack(exactly(4))[0])


def broker_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rounds(addr: str, pid: int, n: int) -> dict[str, float]:
    host, port = addr.rsplit(":", 1)
    kafka_adapter.create_topic(addr, TOPIC)
    value = b"v" * 100
    with (
        socket.create_connection((host, int(port))) as prod,
        socket.create_connection((host, int(port))) as cons,
    ):
        for s in (prod, cons):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(50):  # warm-up: caches, first-call imports
            prod.sendall(produce_frame(i, value))
            _read_frame(prod)
        offset = 50
        times: list[int] = []
        before = broker_cpu_s(pid)
        for i in range(n):
            cons.sendall(fetch_frame(i, offset))
            time.sleep(0.0002)  # let the fetch park before the record lands
            frame = produce_frame(i, value)
            t0 = time.perf_counter_ns()
            prod.sendall(frame)
            got = _read_frame(cons)  # the record delivered: what end-to-end latency is
            times.append(time.perf_counter_ns() - t0)
            _read_frame(prod)
            if len(got) < 100:
                raise AssertionError(f"round {i}: the fetch answered without the record")
            offset += 1
        used = broker_cpu_s(pid) - before
    times.sort()
    return {
        "cpu_us": used / n * 1e6,
        "p50_us": times[len(times) // 2] / 1e3,
        "p99_us": times[int(len(times) * 0.99)] / 1e3,
        "load": os.getloadavg()[0],
    }


def bursts(addr: str, pid: int, n: int, burst: int) -> dict[str, float]:
    """A parked Fetch, then ``burst`` one-record Produce requests pipelined in one write (as
    librdkafka does with ``max.in.flight`` > 1): how long until the fetch answers (the
    first record's delivery) and how many produce answers came before it."""
    host, port = addr.rsplit(":", 1)
    kafka_adapter.create_topic(addr, TOPIC)
    value = b"v" * 100
    with (
        socket.create_connection((host, int(port))) as prod,
        socket.create_connection((host, int(port))) as cons,
    ):
        for s in (prod, cons):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        offset = 0
        fetch_us: list[float] = []
        before_fetch: list[int] = []
        before = broker_cpu_s(pid)
        for i in range(n):
            cons.sendall(fetch_frame(i, offset))
            time.sleep(0.002)  # the fetch is parked before the burst
            frames = b"".join(produce_frame(i * burst + j, value) for j in range(burst))
            t0 = time.perf_counter_ns()
            prod.sendall(frames)
            _read_frame(cons)
            fetch_us.append((time.perf_counter_ns() - t0) / 1e3)
            prod.setblocking(False)
            answered = 0
            try:
                while True:  # produce answers already here when the fetch answered
                    _read_frame(prod)
                    answered += 1
            except BlockingIOError:
                pass
            prod.setblocking(True)
            for _ in range(burst - answered):
                _read_frame(prod)
            before_fetch.append(answered)
            offset += burst
        used = broker_cpu_s(pid) - before
    fetch_us.sort()
    return {
        "cpu_us": used / n * 1e6,
        "p50_us": fetch_us[len(fetch_us) // 2],
        "p99_us": fetch_us[int(len(fetch_us) * 0.99)],
        "produce_answers_first": statistics.mean(before_fetch),
        "load": os.getloadavg()[0],
    }


def _next_offset(answer: bytes) -> int:
    """The offset after the last record of a Fetch v11 answer's one partition (-1: none)."""
    name_length = struct.unpack_from(">h", answer, 18)[0]
    pos = 20 + name_length + 4 + 4 + 2 + 8 + 8 + 8 + 4 + 4  # to the records' size
    size = struct.unpack_from(">i", answer, pos)[0]
    pos, end, nxt = pos + 4, pos + 4 + max(size, 0), -1
    while end - pos >= 61:
        base, length = struct.unpack_from(">qi", answer, pos)
        if pos + 12 + length > end:
            break
        nxt = base + struct.unpack_from(">i", answer, pos + 23)[0] + 1  # lastOffsetDelta
        pos += 12 + length
    return nxt


def replay(addr: str, pid: int, n: int) -> dict[str, float]:
    host, port = addr.rsplit(":", 1)
    kafka_adapter.produce(addr, TOPIC, n, 100)
    with socket.create_connection((host, int(port))) as cons:
        cons.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fetch_frame(0, 0)  # its first call loads kio's schemas (~2 s): not the listener's time
        offset, requests = 0, 0
        before = broker_cpu_s(pid)
        t0 = time.perf_counter()
        while offset < n:
            cons.sendall(fetch_frame(requests, offset))
            nxt = _next_offset(_read_frame(cons))
            if nxt <= offset:
                raise AssertionError(f"no progress at offset {offset}")
            offset, requests = nxt, requests + 1
        seconds = time.perf_counter() - t0
        used = broker_cpu_s(pid) - before
    return {
        "cpu_us": used / n * 1e6,
        "p50_us": n / seconds,  # records/s of the loop, reported in the same column
        "p99_us": 0.0,
        "load": os.getloadavg()[0],
    }


def one(label: str, root: Path | None, n: int, burst: int, records: int = 0) -> dict[str, float]:
    srv = servers.logstream_kafka(root=root)
    try:
        if records:
            row = replay(srv.addr, srv.pid, records)
        elif burst > 1:
            row = bursts(srv.addr, srv.pid, n, burst)
        else:
            row = rounds(srv.addr, srv.pid, n)
    finally:
        srv.stop()
    if records:
        print(
            f"{label}: broker CPU {row['cpu_us'] * 1e3:.0f} ns per replayed record, "
            f"{row['p50_us'] / 1e6:.2f} M records/s, load {row['load']:.1f}",
            flush=True,
        )
        return row
    what = f"burst of {burst}" if burst > 1 else "produce+fetch round"
    first = (
        f", {row['produce_answers_first']:.1f} produce answers before the fetch's"
        if burst > 1
        else ""
    )
    print(
        f"{label}: broker CPU {row['cpu_us']:.1f} us per {what}, fetch answered p50 "
        f"{row['p50_us']:.0f} us p99 {row['p99_us']:.0f} us{first}, load {row['load']:.1f}",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3000)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--base", type=Path, default=None, help="A's tree; without it: B only")
    ap.add_argument("--burst", type=int, default=1, help="pipelined produces per round")
    ap.add_argument("--replay", type=int, default=0, help="records to produce and read back")
    args = ap.parse_args(argv)
    sides = {"B": None} if args.base is None else {"A": args.base, "B": None}
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
    for i in range(args.pairs):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for side in order:
            rows[side].append(one(side, sides[side], args.rounds, args.burst, args.replay))
    for side, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        if args.replay:
            print(
                f"median {side}: broker CPU {med['cpu_us'] * 1e3:.0f} ns/record, "
                f"{med['p50_us'] / 1e6:.2f} M records/s, load {med['load']:.1f}"
            )
            continue
        first = med.get("produce_answers_first")
        print(
            f"median {side}: broker CPU {med['cpu_us']:.1f} us/round, p50 {med['p50_us']:.0f} us, "
            f"p99 {med['p99_us']:.0f} us"
            + (f", {first:.1f} produce answers first" if first is not None else "")
            + f", load {med['load']:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
