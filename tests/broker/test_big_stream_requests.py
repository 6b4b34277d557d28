"""Many ProduceStreams sending large messages at once against a real broker process: each
read reserves room in the broker's request gate before gRPC receives the message
(``rpc.admitted_messages``), so the broker's memory follows its cap, not the number of
streams; nothing is refused, and every record lands once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import grpc
from broker_helpers import run_sampling_rss

from logstream.codec import encode_batch, iter_batches
from logstream.protocol import admin_pb2, admin_pb2_grpc, log_pb2, log_pb2_grpc
from logstream.testing.broker import BrokerProcess

MiB = 1 << 20
STREAMS = 16
MESSAGES = 4  # per stream
BATCHES = 8  # per message: 8 x ~1 MiB, a message just under 8 MiB
RECORDS = 1000  # per batch
VALUE = b"v" * 1000
CAP = 32 * MiB  # max_request_bytes_in_flight: three or four messages
MAX_MESSAGE = 9 * MiB
# An admitted message is held about four times while it is handled (gRPC's buffers, the
# bytes, the parsed message, the batches), so the broker's heap stays within four times the
# cap plus allocator slack. Measured: 114-131 MiB; before the gate 176-290 MiB, growing
# with the number of streams and messages (every stream's next message was received at once).
RSS_GROWTH_BOUND = 4 * CAP + 32 * MiB


def _requests(partition: int) -> list[log_pb2.ProduceRequest]:
    out = []
    for m in range(MESSAGES):
        batches = [
            encode_batch([VALUE] * RECORDS, keys=[f"{partition}:{m}:{b}".encode()] * RECORDS)
            for b in range(BATCHES)
        ]
        out.append(
            log_pb2.ProduceRequest(
                correlation_id=m,
                partitions=[
                    log_pb2.PartitionProduceData(topic="big", partition=partition, batches=batches)
                ],
            )
        )
    return out


def _read_back(channel: grpc.Channel, partition: int) -> Counter[bytes]:
    """Records per batch key in ``partition``, read with Fetch from offset 0 to the end."""
    stub = log_pb2_grpc.LogStub(channel)
    keys: Counter[bytes] = Counter()
    offset = 0
    while True:
        response = stub.Fetch(
            log_pb2.FetchRequest(
                partitions=[
                    log_pb2.FetchPartition(
                        topic="big", partition=partition, offset=offset, max_bytes=4 * MiB
                    )
                ],
                max_bytes=4 * MiB,
            ),
            timeout=30,
        )
        part = response.partitions[0]
        assert part.error_code == 0, part.error_message
        for batch in iter_batches(part.records):
            keys[bytes(batch.key(0) or b"")] += len(batch)
            offset = batch.header.base_offset + batch.header.record_count
        if offset >= part.high_watermark:
            return keys


def test_many_streams_of_large_messages_keep_the_broker_memory_bounded(tmp_path: Path) -> None:
    broker = BrokerProcess(
        tmp_path / "data",
        log_level="WARNING",
        max_message_bytes=MAX_MESSAGE,
        max_request_bytes_in_flight=CAP,
        topic_defaults={"segment_bytes": 64 * MiB},
    ).start()
    try:
        channel = grpc.insecure_channel(
            broker.address, options=[("grpc.max_receive_message_length", MAX_MESSAGE)]
        )
        admin_pb2_grpc.AdminStub(channel).CreateTopics(
            admin_pb2.CreateTopicsRequest(
                topics=[admin_pb2.TopicSpec(name="big", partitions=STREAMS)]
            ),
            timeout=30,
        )
        requests = {p: _requests(p) for p in range(STREAMS)}  # ready before any is sent
        outcomes: dict[int, list[int] | str] = {}

        def stream(partition: int) -> None:
            ch = grpc.insecure_channel(
                broker.address, options=[("grpc.max_send_message_length", MAX_MESSAGE)]
            )
            try:
                answers = log_pb2_grpc.LogStub(ch).ProduceStream(
                    iter(requests[partition]), timeout=120
                )
                outcomes[partition] = [
                    r.error_code or p.error_code
                    for a in answers
                    for p in a.partitions
                    for r in p.results
                ]
            except grpc.RpcError as err:
                outcomes[partition] = err.code().name  # type: ignore[attr-defined]
            finally:
                ch.close()

        time.sleep(0.5)  # let the broker settle after its start
        threads = [threading.Thread(target=stream, args=(p,)) for p in range(STREAMS)]
        growth = run_sampling_rss(broker.pid, threads)
        # nothing refused, every batch answered without an error
        assert outcomes == {p: [0] * (MESSAGES * BATCHES) for p in range(STREAMS)}
        print(f"broker anonymous RSS peak growth {growth / MiB:.0f} MiB")
        assert growth < RSS_GROWTH_BOUND, f"grew {growth / MiB:.0f} MiB"
        # every record landed, none twice
        for p in range(STREAMS):
            assert _read_back(channel, p) == {
                f"{p}:{m}:{b}".encode(): RECORDS for m in range(MESSAGES) for b in range(BATCHES)
            }
        channel.close()
    finally:
        broker.terminate()
