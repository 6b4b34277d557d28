"""The gRPC Python floor: a bare relay measured with logstream's latency workload.

What does moving one record producer process -> server process -> consumer process cost
with grpcio alone, on this machine, in this run? The relay has no storage, no batching, no
protocol beyond raw bytes: the producer writes every record as its own message on one
bidirectional stream (``Pub``, acknowledged per message, pipelined), the server hands each
message to every ``Sub`` server-stream in memory, and the consumer reads its stream on its
own thread. Same threaded ``grpc.server``, same channel defaults, same pacing, stamping
and verification as the logstream adapter. Whatever a broker adds (an append, a log read, a
client library's threads) comes on top of this, so its latency is a lower bound for any
gRPC-Python design of logstream on this machine (docs/performance.md, Latency).

    python -m benchmarks.peers.grpc_floor serve --port 7777     # the relay server
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

from .workload import (
    Result,
    Timer,
    check_alive,
    latency_summary,
    paced_schedule,
    reap,
    sent_ns,
    spawn,
    stamped,
    verify,
    wait_until,
)

SYSTEM = "grpc-floor"
SERVICE = "floor.Relay"
READY_LINE = "relay listening on"
ROOT = Path(__file__).resolve().parents[2]


def _ident(x: bytes) -> bytes:
    return x


def serve(port: int) -> None:
    """Run the relay until killed."""
    import grpc

    subscribers: list[queue.SimpleQueue[bytes | None]] = []
    lock = threading.Lock()

    def pub(messages: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for m in messages:
            with lock:
                for q in subscribers:
                    q.put(m)
            yield b""  # the acknowledgement

    def sub(request: bytes, context: Any) -> Iterator[bytes]:
        q: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        context.add_callback(lambda: q.put(None))
        with lock:
            subscribers.append(q)
        try:
            while (m := q.get()) is not None:
                yield m
        finally:
            with lock:
                subscribers.remove(q)

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Pub": grpc.stream_stream_rpc_method_handler(pub, _ident, _ident),
            "Sub": grpc.unary_stream_rpc_method_handler(sub, _ident, _ident),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"{READY_LINE} 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


def relay_server():  # -> servers.Server
    """Start the relay like the other peers' servers (free loopback port, temp dir)."""
    from . import servers

    port = servers.free_port()
    wd = servers._workdir("grpc-floor")
    argv = [sys.executable, "-m", "benchmarks.peers.grpc_floor", "serve", "--port", str(port)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    srv = servers.Server("grpc-floor", argv, port, wd, ready_line=READY_LINE, env=env)
    srv.extra["config"] = "bare grpc.server relay, raw bytes, one message per record"
    return srv.start(timeout=60.0)


def _latency_producer(addr: str, rate: float, seconds: float, size: int) -> None:
    import grpc

    channel = grpc.insecure_channel(addr)
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def messages() -> Iterator[bytes]:
        while (m := outbox.get()) is not None:
            yield m

    acks = channel.stream_stream(f"/{SERVICE}/Pub", _ident, _ident)(messages())
    drained = threading.Thread(target=lambda: sum(1 for _ in acks), daemon=True)
    drained.start()
    n, period = paced_schedule(rate, seconds)
    t0 = time.monotonic_ns() + 50_000_000
    for i in range(n):
        wait_until(t0 + i * period)
        outbox.put(stamped(i, size))
    outbox.put(None)
    drained.join(30)
    channel.close()


def latency(addr: str, topic: str, rate: float, seconds: float, size: int) -> Result:
    """The peers' latency workload through the relay (``topic`` is unused: one stream)."""
    import grpc

    n, _ = paced_schedule(rate, seconds)
    lat: list[int] = []
    nbytes = 0
    # The same channel option logstream's consumer uses for its Subscribe stream.
    channel = grpc.insecure_channel(
        addr, options=[("grpc.experimental.single_threaded_unary_stream", 1)]
    )
    stream = channel.unary_stream(f"/{SERVICE}/Sub", _ident, _ident)(b"")
    deadline = time.monotonic() + seconds + 30
    timer = threading.Timer(seconds + 30, stream.cancel)  # bounded even if records go missing
    timer.start()
    time.sleep(0.2)  # the subscription is registered before the producer starts
    proc = spawn(_latency_producer, (addr, rate, seconds, size))
    try:
        with Timer() as t:
            for m in stream:
                lat.append(time.monotonic_ns() - sent_ns(m))
                nbytes += len(m)
                if len(lat) >= n or time.monotonic() > deadline:
                    break
    except grpc.RpcError:
        check_alive(proc, f"{SYSTEM} latency")
    finally:
        timer.cancel()
        stream.cancel()
        channel.close()
        reap(proc)
    verify(f"{SYSTEM} latency", n, n * size, len(lat), nbytes)
    res = Result(SYSTEM, "latency", len(lat), nbytes, t.seconds)
    res.extra.update(latency_summary(lat))
    return res


def client_version() -> str:
    import grpc

    return f"grpcio {grpc.__version__}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    serve(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
