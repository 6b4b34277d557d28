"""Many concurrent large unary Produce calls against a real broker process: the broker
admits ``max_request_bytes_in_flight // max_message_bytes`` of them at a time before gRPC
reads their bytes (broker/admission.py), so its memory stays bounded while every call is
still answered. The gate itself: tests/broker/test_request_gate.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
from broker_helpers import run_sampling_rss

from logstream.protocol import log_pb2, log_pb2_grpc
from logstream.testing.broker import BrokerProcess

MiB = 1 << 20
MESSAGE = 8 * MiB  # the broker's max_message_bytes; the cap is two of them: 2 slots
CALLS = 12
# An admitted request is held ~4 times while it is handled (gRPC's buffer, the bytes, the
# parsed message, the batch): the bound is 6 copies per slot plus 32 MiB of gRPC and
# allocator slack. Measured: 70-84 MiB; 257 MiB before the gate (every call's bytes at once).
RSS_GROWTH_BOUND = 6 * 2 * MESSAGE + 32 * MiB


def test_concurrent_max_size_produce_calls_keep_the_broker_memory_bounded(
    tmp_path: Path,
) -> None:
    broker = BrokerProcess(
        tmp_path / "data",
        log_level="WARNING",
        max_message_bytes=MESSAGE,
        max_request_bytes_in_flight=2 * MESSAGE,
        auto_create_topics=True,
    ).start()
    try:
        payload = b"\1" * (MESSAGE - 64 * 1024)  # not a batch: answered per batch, not read
        request = log_pb2.ProduceRequest(
            partitions=[log_pb2.PartitionProduceData(topic="big", batches=[payload])]
        )
        codes: list[str] = []
        lock = threading.Lock()

        def send() -> None:
            channel = grpc.insecure_channel(
                broker.address, options=[("grpc.max_send_message_length", MESSAGE)]
            )
            try:
                log_pb2_grpc.LogStub(channel).Produce(request, timeout=120)
                code = "OK"
            except grpc.RpcError as err:
                code = err.code().name  # type: ignore[attr-defined]
            finally:
                channel.close()
            with lock:
                codes.append(code)

        time.sleep(0.5)  # let the broker settle after its start
        threads = [threading.Thread(target=send) for _ in range(CALLS)]
        growth = run_sampling_rss(broker.pid, threads)
        assert codes == ["OK"] * CALLS
        print(f"broker anonymous RSS peak growth {growth / MiB:.0f} MiB")
        assert growth < RSS_GROWTH_BOUND, f"grew {growth / MiB:.0f} MiB"
    finally:
        broker.terminate()
