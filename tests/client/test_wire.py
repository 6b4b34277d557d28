"""The hand-written ProduceRequest encoding is byte-identical to the generated code's."""

from __future__ import annotations

import time
from typing import Any

import pytest

from logstream.client.wire import produce_request
from logstream.protocol import log_pb2

CASES = [
    (1, 30_000, 7, [("orders", 0, [b"abc"]), ("orders", 3, [b"x" * 300, b"", b"y" * 70_000])]),
    (0, 0, 0, []),
    (2, 1, 2**40, [("", 0, [])]),
    (1, -1, -5, [("tópico-ü", 2**31 - 1, [bytes(range(256))])]),
    (1, 127, 128, [("t", 127, [b"a" * 127]), ("t", 128, [b"b" * 128]), ("u", 16_384, [])]),
]


@pytest.mark.parametrize(("acks", "timeout_ms", "corr", "parts"), CASES)
def test_produce_request_matches_protobuf(
    acks: int, timeout_ms: int, corr: int, parts: list[tuple[str, int, list[bytes]]]
) -> None:
    expected = log_pb2.ProduceRequest(
        acks=acks,  # type: ignore[arg-type]
        timeout_ms=timeout_ms,
        correlation_id=corr,
        partitions=[
            log_pb2.PartitionProduceData(topic=t, partition=p, batches=b) for t, p, b in parts
        ],
    )
    raw = produce_request(acks, timeout_ms, corr, parts)
    assert raw == expected.SerializeToString()
    assert log_pb2.ProduceRequest.FromString(raw) == expected


def test_producer_on_a_grpc_transport_sends_serialized_requests(
    broker: Any, topic_name: str
) -> None:
    from logstream import Admin, Consumer, Producer, TopicPartition

    with Admin(broker.address) as admin:
        admin.create_topic(topic_name, partitions=2)
    with Producer(broker.address) as p:
        futs = [p.send(topic_name, b"v%d" % i, key=b"k%d" % i) for i in range(50)]
        futs.append(p.send(topic_name, b"h", partition=1, headers={"a": b"1"}, timestamp_ms=7))
        p.flush(10)
    metas = [f.result(0) for f in futs]
    with Consumer(broker.address, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)])
        got: list[Any] = []
        deadline = time.monotonic() + 10
        while len(got) < len(futs) and time.monotonic() < deadline:
            got += c.poll(0.5, max_records=1000)
    by_pos = {(r.partition, r.offset): r for r in got}
    for i, m in enumerate(metas[:50]):
        rec = by_pos[(m.partition, m.offset)]
        assert (rec.key, rec.value) == (b"k%d" % i, b"v%d" % i)
    last = by_pos[(metas[50].partition, metas[50].offset)]
    assert (last.value, last.timestamp_ms, tuple(last.headers)) == (b"h", 7, (("a", b"1"),))
