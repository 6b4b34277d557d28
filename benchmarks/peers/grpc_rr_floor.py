"""The gRPC Python floor of a request/reply round trip: two relays through one grpc.aio server.

What does the cheapest request/reply that logstream's shape allows cost with grpcio alone,
on this machine, in this run? The shape is logstream's (decisions 0028, 0037, 0039):

- the requester (sync grpcio, the calling process) writes each request as one message on a
  client stream (``Req``, never answered: ``errors_only``), from gRPC's request-iterator
  thread, and reads replies on a server stream (``Inbox``) on its own reader thread;
- the server is one ``grpc.aio`` server on one event loop (as the broker is), holding no
  storage: a request is handed to the responder's stream, a reply to the inbox stream of
  the requester it names;
- the responder (sync grpcio, its own process) holds one bidirectional stream (``Serve``,
  a push session): requests come down, replies go up through the request iterator.

So a request is four gRPC messages, every one through the server's loop, and wakes the same
threads logstream's does (caller, request iterator, server loop, responder's reader and
iterator threads, requester's reader). Whatever logstream adds (an append, the queue
engine, its state log, protobuf, batch checks) comes on top of this, so its round trip is
a lower bound for a request/reply over a Python gRPC broker (benchmarks/RESULTS.md,
"Request/reply: the gRPC floor").

    python benchmarks/peers/grpc_rr_floor.py [--rate 500] [--seconds 10] [--runs 3] [--nats]

Prints p50/p99 and the CPU per request of the server, the responder and the requester
(from /proc, while the requests flowed), and NATS core request/reply in the same run with
``--nats``.
"""

from __future__ import annotations

import argparse
import os
import queue
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers.workload import latency_summary, paced_schedule, reap, spawn, wait_until  # noqa: E402

SERVICE = "floor.RR"
HEAD = struct.Struct("<Qq")  # inbox id, request sequence number
READY_LINE = "rr relay listening on"


def _ident(x: bytes) -> bytes:
    return x


def serve(port: int) -> None:
    """The relay: requests to the one responder, replies to the inbox their head names."""
    import asyncio

    import grpc

    async def main() -> None:
        responders: list[asyncio.Queue[bytes]] = []
        inboxes: dict[int, asyncio.Queue[bytes]] = {}

        async def req(messages: Any, context: Any) -> bytes:
            async for m in messages:
                if responders:
                    responders[0].put_nowait(m)
            return b""

        async def inbox(request: bytes, context: Any) -> Any:
            q: asyncio.Queue[bytes] = asyncio.Queue()
            inboxes[HEAD.unpack_from(request)[0]] = q
            yield b""  # open: requests sent from now on can be answered
            while True:
                yield await q.get()

        async def serve_stream(messages: Any, context: Any) -> Any:
            q: asyncio.Queue[bytes] = asyncio.Queue()
            responders.append(q)

            async def replies() -> None:
                async for m in messages:
                    box = inboxes.get(HEAD.unpack_from(m)[0])
                    if box is not None:
                        box.put_nowait(m)

            task = asyncio.create_task(replies())
            try:
                while True:
                    yield await q.get()
            finally:
                task.cancel()
                responders.remove(q)

        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Req": grpc.stream_unary_rpc_method_handler(req, _ident, _ident),
                "Inbox": grpc.unary_stream_rpc_method_handler(inbox, _ident, _ident),
                "Serve": grpc.stream_stream_rpc_method_handler(serve_stream, _ident, _ident),
            },
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print(f"{READY_LINE} 127.0.0.1:{port}", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def _responder(addr: str, ready: Any, stop: Any) -> None:
    import grpc

    channel = grpc.insecure_channel(addr)
    out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def replies() -> Iterator[bytes]:
        while (m := out.get()) is not None:
            yield m

    requests = channel.stream_stream(f"/{SERVICE}/Serve", _ident, _ident)(replies())
    threading.Thread(target=lambda: (stop.wait(), requests.cancel()), daemon=True).start()
    ready.set()
    try:
        for m in requests:
            out.put(m)  # the echo
    except grpc.RpcError:
        pass
    out.put(None)
    channel.close()


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def floor_rr(addr: str, rate: float, seconds: float, size: int, server_pid: int) -> dict:
    import multiprocessing as mp

    import grpc

    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = spawn(_responder, (addr, ready, stop))
    channel = grpc.insecure_channel(
        addr, options=[("grpc.experimental.single_threaded_unary_stream", 1)]
    )
    n, period = paced_schedule(rate, seconds)
    sent: dict[int, int] = {}
    got: dict[int, int] = {}
    done = threading.Event()
    box = 7
    replies = channel.unary_stream(f"/{SERVICE}/Inbox", _ident, _ident)(HEAD.pack(box, -1))
    next(replies)  # the inbox is open

    def read() -> None:
        try:
            for m in replies:
                got[HEAD.unpack_from(m)[1]] = time.monotonic_ns()
                if len(got) >= n:
                    done.set()
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def requests() -> Iterator[bytes]:
        while (m := out.get()) is not None:
            yield m

    call = channel.stream_unary(f"/{SERVICE}/Req", _ident, _ident).future(requests())
    try:
        if not ready.wait(60):
            raise RuntimeError("responder not ready in 60 s")
        time.sleep(0.3)  # the responder's stream is open on the server
        pids = [server_pid, proc.pid, os.getpid()]
        pad = b"r" * max(0, size - HEAD.size)
        cpu0 = [_proc_cpu_s(p) for p in pids]
        t0 = time.monotonic_ns()
        for i in range(n):
            wait_until(t0 + i * period)
            sent[i] = time.monotonic_ns()
            out.put(HEAD.pack(box, i) + pad)
        done.wait(15)
        cpu = [(_proc_cpu_s(p) - c) / n * 1e6 for p, c in zip(pids, cpu0, strict=True)]
    finally:
        out.put(None)
        stop.set()
        replies.cancel()
        call.cancel()
        channel.close()
        reap(proc)
    if len(got) != n:
        raise RuntimeError(f"grpc floor request/reply: {n} requests, {len(got)} replies")
    res = latency_summary([got[i] - sent[i] for i in range(n)])
    res["cpu_us"] = dict(zip(("server", "responder", "requester"), cpu, strict=True))
    return res


def relay_server():  # -> servers.Server
    from benchmarks.peers import servers

    port = servers.free_port()
    wd = servers._workdir("grpc-rr-floor")
    argv = [sys.executable, str(Path(__file__).resolve()), "serve", "--port", str(port)]
    srv = servers.Server("grpc-rr-floor", argv, port, wd, ready_line=READY_LINE)
    return srv.start(timeout=60.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", nargs="?", default="run", choices=["run", "serve"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--nats", action="store_true", help="NATS request/reply in the same run")
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        serve(args.port)
        return 0
    from benchmarks.peers import request_reply, servers

    print("| system | run | p50 ms | p99 ms | load avg | CPU us/request |")
    print("| --- | --- | --- | --- | --- | --- |")
    for run in range(args.runs):
        srv = relay_server()
        try:
            e = floor_rr(srv.addr, args.rate, args.seconds, args.size, srv.pid)
        finally:
            srv.stop()
        cpu = " ".join(f"{k} {v:.0f}" for k, v in e["cpu_us"].items())
        load = os.getloadavg()[0]
        print(
            f"| grpc rr floor | {run} | {e['p50_ms']:.3f} | {e['p99_ms']:.3f} | "
            f"{load:.2f} | {cpu} |",
            flush=True,
        )
        if args.nats:
            srv = servers.nats_server()
            try:
                r = request_reply.nats_rr(srv.addr, f"f{run}", args.rate, args.seconds, args.size)
            finally:
                srv.stop()
            e = r.extra
            print(
                f"| NATS | {run} | {e['p50_ms']:.3f} | {e['p99_ms']:.3f} | "
                f"{os.getloadavg()[0]:.2f} | |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
