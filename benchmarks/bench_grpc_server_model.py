"""Threaded ``grpc.server`` vs ``grpc.aio`` for the broker's shape of traffic.

    python benchmarks/bench_grpc_server_model.py

A trivial Log servicer (keeps produced bytes in memory, answers fetches from a fixed 1 KB
buffer) is served in a child process by each server model; a Python client on loopback then
measures unary Produce of ~100 KB batches and small Fetches, sequentially and from 4 threads.
The numbers and the decision are recorded in docs/decisions/0003-threaded-grpc-server.md.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import sys
import threading
import time
from concurrent import futures

import grpc

from logstream.protocol import log_pb2, log_pb2_grpc

PAYLOAD = b"x" * 100_000
SMALL = b"y" * 1_000
OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


def _produce_response(request: log_pb2.ProduceRequest) -> log_pb2.ProduceResponse:
    n = sum(len(b) for p in request.partitions for b in p.batches)
    return log_pb2.ProduceResponse(
        partitions=[
            log_pb2.PartitionProduceResponse(
                topic="t", results=[log_pb2.BatchResult(base_offset=n)]
            )
        ]
    )


def _fetch_response() -> log_pb2.FetchResponse:
    return log_pb2.FetchResponse(
        partitions=[log_pb2.FetchPartitionResponse(topic="t", records=SMALL)]
    )


class SyncServicer(log_pb2_grpc.LogServicer):
    def Produce(self, request, context):
        return _produce_response(request)

    def Fetch(self, request, context):
        return _fetch_response()


class AioServicer(log_pb2_grpc.LogServicer):
    async def Produce(self, request, context):
        return _produce_response(request)

    async def Fetch(self, request, context):
        return _fetch_response()


def _serve_sync(q: mp.Queue) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=OPTIONS)
    log_pb2_grpc.add_LogServicer_to_server(SyncServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    q.put(port)
    server.wait_for_termination()


def _serve_aio(q: mp.Queue) -> None:
    async def main() -> None:
        server = grpc.aio.server(options=OPTIONS)
        log_pb2_grpc.add_LogServicer_to_server(AioServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        q.put(port)
        await server.wait_for_termination()

    asyncio.run(main())


def _run(stub: log_pb2_grpc.LogStub, kind: str, n: int) -> None:
    if kind == "produce":
        req = log_pb2.ProduceRequest(
            partitions=[log_pb2.PartitionProduceData(topic="t", batches=[PAYLOAD])]
        )
        for _ in range(n):
            stub.Produce(req)
    else:
        req = log_pb2.FetchRequest(partitions=[log_pb2.FetchPartition(topic="t")])
        for _ in range(n):
            stub.Fetch(req)


def measure(port: int, kind: str, n: int, threads: int) -> float:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS)
    stub = log_pb2_grpc.LogStub(channel)
    _run(stub, kind, 50)  # warm up
    start = time.perf_counter()
    ts = [threading.Thread(target=_run, args=(stub, kind, n // threads)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - start
    channel.close()
    return n / elapsed


def main() -> None:
    ctx = mp.get_context("spawn")
    for name, target in [("threaded", _serve_sync), ("aio", _serve_aio)]:
        q = ctx.Queue()
        proc = ctx.Process(target=target, args=(q,), daemon=True)
        proc.start()
        port = q.get(timeout=30)
        for kind, n in [("produce", 2000), ("fetch", 5000)]:
            for threads in (1, 4):
                rate = measure(port, kind, n, threads)
                extra = f" ({rate * len(PAYLOAD) / 1e6:.0f} MB/s)" if kind == "produce" else ""
                print(f"{name:9s} {kind:8s} threads={threads}: {rate:8.0f} req/s{extra}")
        proc.terminate()
        proc.join()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
