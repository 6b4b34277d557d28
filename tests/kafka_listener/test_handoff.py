"""A Produce answers the Fetch parked at its batch's offset itself (``kafka/handoff.py``),
with exactly the frame the normal Fetch path sends for the same records.

A real listener on a loopback port and plain sockets: a Fetch is parked on one connection
(observable: the hand-off registry holds it), a Produce arrives on another, and the
parked Fetch's whole answer frame is compared byte for byte with the frame a normal,
non-waiting Fetch of the same offset gets afterwards (same correlation id, nothing
appended in between). ``handed`` says which path answered.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from kio.index import load_request_schema

from logstream.kafka.listener import KafkaListener
from logstream.kafka.wire import build
from logstream.testing.broker import RunningBroker
from logstream.testing.wait import wait_for
from tests.kafka_listener.test_sent_batches import (
    NULL_HEADER,
    RECORDS,
    SIZE,
    _frame,
    kafka_batch,
    produce,
)

TOPIC = "t"


def fetch_frame(
    offset: int,
    *,
    version: int = 11,
    max_wait: int = 10_000,
    min_bytes: int = 1,
    isolation: int = 0,
    partitions: tuple[int, ...] = (0,),
    correlation_id: int = 7,
) -> bytes:
    mod = __import__(load_request_schema(1, version).__module__, fromlist=["_"])
    parts = tuple(
        build(
            mod.FetchPartition,
            partition=p,
            current_leader_epoch=-1,
            fetch_offset=offset,
            log_start_offset=-1,
            partition_max_bytes=1 << 20,
        )
        for p in partitions
    )
    return _frame(
        1, version, correlation_id, replica_id=-1, max_wait=max_wait, min_bytes=min_bytes,
        max_bytes=50 << 20, isolation_level=isolation, session_id=0, session_epoch=-1,
        topics=(build(mod.FetchTopic, topic=TOPIC, partitions=parts),),
        forgotten_topics_data=(), rack_id="",
    )  # fmt: skip


def read_frame(sock: socket.socket) -> bytes:
    head = sock.recv(4, socket.MSG_WAITALL)
    assert len(head) == 4, "the listener closed the connection"
    return head + sock.recv(SIZE.unpack(head)[0], socket.MSG_WAITALL)


def wait_parked(kafka: KafkaListener, partition: int = 0, timeout_s: float = 10.0) -> None:
    wait_for(lambda: kafka.apis.handoff.waiting(TOPIC, partition), timeout_s, "the Fetch to park")


def connect(kafka: KafkaListener) -> socket.socket:
    return socket.create_connection(("127.0.0.1", kafka.port), timeout=20)


def normal_answer(kafka: KafkaListener, offset: int, **fetch: Any) -> bytes:
    """The frame a Fetch that does not wait gets (the normal path: a storage read)."""
    handed = kafka.apis.handoff.handed
    with connect(kafka) as sock:
        sock.sendall(fetch_frame(offset, **{**fetch, "max_wait": 0}))
        frame = read_frame(sock)
    assert kafka.apis.handoff.handed == handed
    return frame


@pytest.mark.parametrize(("version", "isolation"), [(11, 0), (11, 1), (7, 0), (4, 1)], ids=str)
def test_a_parked_fetch_gets_the_frame_the_normal_fetch_sends(
    running: tuple[RunningBroker, KafkaListener], version: int, isolation: int
) -> None:
    _, kafka = running
    fetch = {"version": version, "isolation": isolation}
    with connect(kafka) as prod, connect(kafka) as cons:
        produce(prod, TOPIC, kafka_batch(RECORDS))  # creates the topic; offsets 0-2
        for round_no in range(3):  # the consumer's connection goes on serving after each
            offset = 3 * (round_no + 1)
            cons.sendall(fetch_frame(offset, **fetch))
            wait_parked(kafka)
            handed = kafka.apis.handoff.handed
            assert produce(prod, TOPIC, kafka_batch(RECORDS)) == offset
            got = read_frame(cons)
            assert kafka.apis.handoff.handed == handed + 1  # the Produce answered it
            assert not kafka.apis.handoff.waiting(TOPIC, 0)
            assert got == normal_answer(kafka, offset, **fetch)  # byte for byte


def test_the_answer_carries_the_records_at_their_offsets(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    """Not only equal to the normal path: what a Kafka reader finds in it."""
    from aiokafka.record._crecords import DefaultRecordBatch

    _, kafka = running
    with connect(kafka) as prod, connect(kafka) as cons:
        produce(prod, TOPIC, kafka_batch(RECORDS))
        cons.sendall(fetch_frame(3))
        wait_parked(kafka)
        produce(prod, TOPIC, kafka_batch(RECORDS))
        got = read_frame(cons)
    start = got.index(struct.pack(">q", 3), 4)  # the batch's base offset
    batch = DefaultRecordBatch(got[start:])
    assert batch.validate_crc()
    assert [(r.offset, r.key, r.value) for r in batch] == [
        (3 + i, key, value) for i, (key, value, _) in enumerate(RECORDS)
    ]


@pytest.mark.parametrize(
    ("records", "codec", "fetch", "topic_config"),
    [
        (RECORDS, 1, {}, {}),  # gzip: stored uncompressed, so converted
        (RECORDS, 0, {}, {"timestamp_type": "log_append"}),
        (NULL_HEADER, 0, {}, {}),
        (RECORDS, 0, {"min_bytes": 1 << 16}, {}),  # the batch is less than asked for
    ],
    ids=["gzip", "log-append-time", "null-header-value", "min-bytes"],
)
def test_what_could_differ_takes_the_normal_path(
    running: tuple[RunningBroker, KafkaListener],
    records: list[Any],
    codec: int,
    fetch: dict[str, Any],
    topic_config: dict[str, str],
) -> None:
    broker, kafka = running
    broker.broker.manager.create_topic(TOPIC, 2, topic_config)
    with connect(kafka) as prod, connect(kafka) as cons:
        cons.sendall(fetch_frame(0, max_wait=300, **fetch))
        wait_parked(kafka)
        produce(prod, TOPIC, kafka_batch(records, codec))
        got = read_frame(cons)
    assert kafka.apis.handoff.handed == 0
    assert got == normal_answer(kafka, 0, **fetch)


def test_a_fetch_of_two_partitions_is_not_handed_over(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    broker, kafka = running
    broker.broker.manager.create_topic(TOPIC, 2, {})
    with connect(kafka) as prod, connect(kafka) as cons:
        cons.sendall(fetch_frame(0, partitions=(0, 1)))
        wait_for(lambda: broker.broker.notifier.registered() >= 2, 10, "parked on both partitions")
        assert not kafka.apis.handoff.waiting(TOPIC, 0)
        produce(prod, TOPIC, kafka_batch(RECORDS))
        got = read_frame(cons)
    assert kafka.apis.handoff.handed == 0
    assert got == normal_answer(kafka, 0, partitions=(0, 1))


class _Conn:
    def __init__(self) -> None:
        self.answers: list[Any] = []

    def answer_early(self, answer: Any) -> bool:
        self.answers.append(answer)
        return True


class _Log:
    def __init__(self, end: int) -> None:
        self.log_end_offset = end
        self.log_start_offset = 0


def test_an_append_from_elsewhere_in_between_leaves_the_fetch_to_the_normal_path() -> None:
    """The log end must be just past the handed batch (else a read at the Fetch's offset
    returns more than it); a Fetch at another offset is left alone too."""
    from logstream.kafka.handoff import Handoff, ParkedFetch

    handoff = Handoff()
    conn = _Conn()
    fetch = ParkedFetch(conn, None, TOPIC, 0, 10, 1)  # type: ignore[arg-type]
    other = ParkedFetch(conn, None, TOPIC, 0, 11, 1)  # type: ignore[arg-type]
    handoff.park(fetch)
    handoff.park(other)

    def frame(*args: Any) -> Any:
        return args

    # 3 records at 10: the log end should be 13; 14 means another batch came in between
    assert handoff.appended(TOPIC, 0, 10, 3, 100, b"k", _Log(14), frame) == 0
    assert conn.answers == [] and handoff.waiting(TOPIC, 0)
    assert handoff.appended(TOPIC, 0, 10, 3, 100, b"k", _Log(13), frame) == 1
    assert conn.answers == [(None, 13, 0, b"k")]
    assert handoff.waiting(TOPIC, 0)  # the Fetch at 11 still waits
    handoff.unpark(other)
    assert not handoff.waiting(TOPIC, 0)


def test_a_failed_hand_off_leaves_the_produce_stored_and_the_fetch_to_its_task(
    running: tuple[RunningBroker, KafkaListener], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is stored before the hand-off: an error there must not fail the Produce
    (a retry would store it twice), and the parked Fetch still gets its answer."""
    _, kafka = running

    def broken(*_args: Any) -> Any:
        raise RuntimeError("encoding failed")

    with connect(kafka) as prod, connect(kafka) as cons:
        produce(prod, TOPIC, kafka_batch(RECORDS))  # offsets 0-2
        monkeypatch.setattr(kafka.apis, "fetch_frame", broken)
        cons.sendall(fetch_frame(3))
        wait_parked(kafka)
        assert produce(prod, TOPIC, kafka_batch(RECORDS)) == 3  # stored, answered as such
        got = read_frame(cons)
        assert kafka.apis.handoff.handed == 0
    assert got == normal_answer(kafka, 3)
