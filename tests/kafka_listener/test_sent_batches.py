"""A caught-up Fetch answers with the producer's own Kafka bytes (``kafka/sent_batches.py``),
and only when they are what converting the stored batch back would give."""

from __future__ import annotations

import io
import socket
import struct
from typing import Any

import pytest
from aiokafka.record._crecords import DefaultRecordBatch, DefaultRecordBatchBuilder
from kio.index import load_request_schema
from kio.serial import entity_writer

from logstream.codec import encode_small_batch, read_header
from logstream.kafka.listener import KafkaListener
from logstream.kafka.records import logstream_to_kafka
from logstream.kafka.sent_batches import MAX_BYTES, MAX_PARTITIONS, SentBatches
from logstream.kafka.wire import build
from logstream.testing.broker import RunningBroker

SIZE = struct.Struct(">i")
T0 = 1_700_000_000_000


def _frame(api_key: int, version: int, correlation_id: int, **body: Any) -> bytes:
    cls = load_request_schema(api_key, version)
    header_cls = cls.__header_schema__
    out = io.BytesIO()
    entity_writer(header_cls)(
        out,
        header_cls(
            request_api_key=api_key,
            request_api_version=version,
            correlation_id=correlation_id,
            client_id="test",
        ),
    )
    entity_writer(cls)(out, build(cls, **body))
    return SIZE.pack(len(out.getvalue())) + out.getvalue()


def _call(sock: socket.socket, frame: bytes) -> bytes:
    sock.sendall(frame)
    head = sock.recv(4, socket.MSG_WAITALL)
    return sock.recv(SIZE.unpack(head)[0], socket.MSG_WAITALL)


def produce(sock: socket.socket, topic: str, batch: bytes) -> int:
    """The base offset the batch was stored at."""
    mod = __import__(load_request_schema(0, 8).__module__, fromlist=["_"])
    part = mod.PartitionProduceData(index=0, records=batch)
    data = (mod.TopicProduceData(name=topic, partition_data=(part,)),)
    answer = _call(sock, _frame(0, 8, 1, acks=1, timeout=30_000, topic_data=data))
    # correlation id, [topic: name, [index, error, base_offset, ...]]
    name_length = struct.unpack_from(">h", answer, 8)[0]
    _, error, base_offset = struct.unpack_from(">ihq", answer, 10 + name_length + 4)
    assert error == 0
    return int(base_offset)


def fetch(sock: socket.socket, topic: str, offset: int) -> bytes:
    """The records bytes of partition 0 in a Fetch v11 answer."""
    mod = __import__(load_request_schema(1, 11).__module__, fromlist=["_"])
    part = mod.FetchPartition(
        partition=0,
        current_leader_epoch=-1,
        fetch_offset=offset,
        log_start_offset=-1,
        partition_max_bytes=1 << 20,
    )
    answer = _call(
        sock,
        _frame(
            1, 11, 2, replica_id=-1, max_wait=0, min_bytes=1, max_bytes=50 << 20,
            isolation_level=0, session_id=0, session_epoch=-1,
            topics=(mod.FetchTopic(topic=topic, partitions=(part,)),),
            forgotten_topics_data=(), rack_id="",
        ),
    )  # fmt: skip
    # correlation id, throttle, error, session, [topic: name, [partition, error, hw, lso,
    # log start, aborted (-1), preferred replica, records]]
    name_length = struct.unpack_from(">h", answer, 18)[0]
    pos = 20 + name_length + 4 + 4 + 2 + 8 + 8 + 8 + 4 + 4
    size = struct.unpack_from(">i", answer, pos)[0]
    return answer[pos + 4 : pos + 4 + size]


def kafka_batch(records: list[tuple[Any, Any, list[Any]]], codec: int = 0, step: int = 1) -> bytes:
    builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, -1, 1 << 20)
    for i, (key, value, headers) in enumerate(records):
        builder.append(i * step, T0 + i, key, value, headers)
    return bytes(builder.build())


def rows(raw: bytes) -> list[tuple[Any, ...]]:
    out = []
    pos = 0
    while pos < len(raw):
        length = struct.unpack_from(">i", raw, pos + 8)[0] + 12
        for r in DefaultRecordBatch(raw[pos : pos + length]):
            out.append((r.offset, r.timestamp, r.key, r.value, list(r.headers)))
        pos += length
    return out


RECORDS = [(b"k", b"v" * 100, [("h", b"x"), ("e", b"")]), (None, b"w", []), (b"t", None, [])]
NULL_HEADER = [(b"k", b"v", [("n", None)])]  # logstream reads a null header value as b""


def test_a_caught_up_fetch_answers_with_the_producers_bytes(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    broker, kafka = running
    with socket.create_connection(("127.0.0.1", kafka.port), timeout=20) as sock:
        produce(sock, "t", kafka_batch(RECORDS))
        base = produce(sock, "t", kafka_batch(RECORDS))
        hits = kafka.apis.sent.hits
        got = fetch(sock, "t", base)
    assert base == 3
    assert kafka.apis.sent.hits == hits + 1
    stored = bytes(broker.broker.get_log("t", 0).read(base, 1 << 20))
    assert got == logstream_to_kafka(stored)  # byte for byte what the conversion gives
    assert [r[0] for r in rows(got)] == [3, 4, 5]


@pytest.mark.parametrize(
    ("records", "codec", "step", "topic_config"),
    [
        (RECORDS, 0, 2, {}),  # offset deltas 0, 2, 4: stored as 0, 1, 2
        (RECORDS, 1, 1, {}),  # gzip: stored uncompressed
        (RECORDS, 0, 1, {"timestamp_type": "log_append"}),  # the broker stamps its time
        (NULL_HEADER, 0, 1, {}),
    ],
    ids=["offset-gaps", "gzip", "log-append-time", "null-header-value"],
)
def test_bytes_that_say_more_than_the_stored_batch_are_converted(
    running: tuple[RunningBroker, KafkaListener],
    records: list[Any],
    codec: int,
    step: int,
    topic_config: dict[str, str],
) -> None:
    broker, kafka = running
    broker.broker.manager.create_topic("t", 1, topic_config)
    with socket.create_connection(("127.0.0.1", kafka.port), timeout=20) as sock:
        base = produce(sock, "t", kafka_batch(records, codec, step))
        got = fetch(sock, "t", base)
    assert kafka.apis.sent.hits == 0
    stored = bytes(broker.broker.get_log("t", 0).read(base, 1 << 20))
    assert got == logstream_to_kafka(stored)
    assert [r[0] for r in rows(got)] == list(range(len(records)))


def test_a_fetch_of_more_than_the_last_batch_is_converted(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    _, kafka = running
    with socket.create_connection(("127.0.0.1", kafka.port), timeout=20) as sock:
        produce(sock, "t", kafka_batch(RECORDS))
        produce(sock, "t", kafka_batch(RECORDS))
        got = fetch(sock, "t", 0)
    assert kafka.apis.sent.hits == 0
    assert [r[0] for r in rows(got)] == list(range(6))


def test_kept_batches_are_bounded_in_size_and_partitions() -> None:
    sent = SentBatches()
    small = kafka_batch([(None, b"v", [])])
    stored = encode_small_batch([None], [b"v"], [T0], [b""])
    for partition in range(MAX_PARTITIONS + 1):
        sent.remember("t", partition, small, stored.header, 0)
    assert sent.lookup("t", 0, stored.data) is None  # the oldest went first
    assert sent.lookup("t", MAX_PARTITIONS, stored.data) is not None
    big = kafka_batch([(None, b"v" * MAX_BYTES, [])])
    sent.remember("t", 1, big, stored.header, 0)
    assert sent.lookup("t", 1, stored.data) is None
    other = encode_small_batch([None], [b"w"], [T0], [b""])
    assert sent.lookup("t", MAX_PARTITIONS, other.data) is None  # same length, other CRC
    assert read_header(other.data).batch_length == read_header(stored.data).batch_length


def batches(raw: bytes) -> list[bytes]:
    """The whole Kafka batches of a Fetch answer's records; fails on a partial one."""
    out, pos = [], 0
    while pos < len(raw):
        length = struct.unpack_from(">i", raw, pos + 8)[0] + 12
        assert pos + length <= len(raw), f"a partial batch at {pos} of {len(raw)} bytes"
        out.append(raw[pos : pos + length])
        pos += length
    return out


def test_fetch_answers_are_whole_batches_within_the_partition_limit(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    """A librdkafka-sized produced batch (~1 MB of 100 B records) is stored as two
    logstream batches (it outgrows max_batch_bytes once converted); Fetches of 1 MiB from
    the start read whole Kafka batches, each a stored batch with its own base offset,
    leader epoch 0 and a valid CRC, never more than the partition limit, and together the
    records in order: the shape a replaying consumer depends on."""
    _, kafka = running
    value = b"v" * 100
    produced = kafka_batch([(None, value, [])] * 10_000)  # the builder stops at 1 MiB
    count = len(list(DefaultRecordBatch(produced)))
    assert count > 9_000
    with socket.create_connection(("127.0.0.1", kafka.port)) as sock:
        for _ in range(2):
            produce(sock, "shape", produced)
        offset, answers = 0, []
        while offset < 2 * count:
            raw = fetch(sock, "shape", offset)
            got = batches(raw)
            assert got and len(raw) <= 1 << 20
            answers.append(len(got))
            for b in got:
                batch = DefaultRecordBatch(b)
                assert batch.validate_crc()
                assert struct.unpack_from(">qii", b)[0::2] == (offset, 0)  # base, epoch
                values = [r.value for r in batch]
                assert values == [value] * len(values)
                offset += len(values)
    assert offset == 2 * count
    assert len(answers) >= 4  # two stored batches per produced one, each fetched whole
