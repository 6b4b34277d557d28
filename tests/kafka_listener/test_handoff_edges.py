"""The hand-off (``kafka/handoff.py``) where it meets other requests and connections: two
Fetches parked on one partition, a request pipelined behind the parked Fetch, a connection
closed while parked, a Produce with acks=0, an append from the gRPC side, the fetch metrics.

A real listener and broker on loopback ports, plain sockets (and the native client for the
gRPC side); every answer is compared byte for byte with what the normal path sends.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from kio.index import load_request_schema

from logstream.kafka.listener import KafkaListener
from logstream.testing.broker import RunningBroker
from logstream.testing.wait import wait_for
from tests.kafka_listener.conftest import listener_in_process
from tests.kafka_listener.test_handoff import (
    TOPIC,
    connect,
    fetch_frame,
    normal_answer,
    read_frame,
    wait_parked,
)
from tests.kafka_listener.test_sent_batches import RECORDS, _frame, kafka_batch, produce


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[RunningBroker, KafkaListener]]:
    # the HTTP listener makes the broker keep real traffic counters
    with listener_in_process(tmp_path, http_listen="127.0.0.1:0") as pair:
        yield pair


def _parked_count(kafka: KafkaListener, n: int, timeout_s: float = 10.0) -> None:
    parked = kafka.apis.handoff._parked  # the registry: which Fetches wait where
    wait_for(lambda: len(parked.get((TOPIC, 0), ())) == n, timeout_s, f"{n} parked Fetches")


def test_two_fetches_parked_on_one_partition_both_get_the_normal_answer(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    _, kafka = running
    with connect(kafka) as prod, connect(kafka) as a, connect(kafka) as b:
        produce(prod, TOPIC, kafka_batch(RECORDS))
        a.sendall(fetch_frame(3, correlation_id=11))
        b.sendall(fetch_frame(3, correlation_id=12, version=7))
        _parked_count(kafka, 2)
        assert produce(prod, TOPIC, kafka_batch(RECORDS)) == 3
        got_a, got_b = read_frame(a), read_frame(b)
    assert kafka.apis.handoff.handed == 2
    assert got_a == normal_answer(kafka, 3, correlation_id=11)
    assert got_b == normal_answer(kafka, 3, correlation_id=12, version=7)


def test_a_request_pipelined_behind_the_parked_fetch_is_served(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    """The handed connection takes its next, already buffered, request (no stall), and its
    answers stay in request order."""
    _, kafka = running
    with connect(kafka) as prod, connect(kafka) as cons:
        produce(prod, TOPIC, kafka_batch(RECORDS))
        cons.sendall(fetch_frame(3, correlation_id=21) + fetch_frame(6, correlation_id=22))
        wait_parked(kafka)
        assert produce(prod, TOPIC, kafka_batch(RECORDS)) == 3
        first = read_frame(cons)
        _parked_count(kafka, 1)  # the second one parked in its turn, at 6
        assert kafka.apis.handoff._parked[(TOPIC, 0)][0].offset == 6
        assert first == normal_answer(kafka, 3, correlation_id=21)
        assert produce(prod, TOPIC, kafka_batch(RECORDS)) == 6
        second = read_frame(cons)
    assert kafka.apis.handoff.handed == 2
    assert second == normal_answer(kafka, 6, correlation_id=22)


def test_a_connection_closed_while_parked_is_not_handed_anything(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    _, kafka = running
    with connect(kafka) as prod:
        produce(prod, TOPIC, kafka_batch(RECORDS))
        with connect(kafka) as gone:
            gone.sendall(fetch_frame(3))
            wait_parked(kafka)
            # a reset, so the listener loses the connection now (after a plain close, a
            # FIN, it finishes the request in hand: the half-closed test below)
            gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # its task cancelled, unparked
        wait_for(lambda: not kafka.apis.handoff.waiting(TOPIC, 0), 10, "the Fetch to unpark")
        assert produce(prod, TOPIC, kafka_batch(RECORDS)) == 3
        with connect(kafka) as cons:  # the listener goes on serving
            cons.sendall(fetch_frame(6))
            wait_parked(kafka)
            assert produce(prod, TOPIC, kafka_batch(RECORDS)) == 6
            got = read_frame(cons)
    assert kafka.apis.handoff.handed == 1
    assert got == normal_answer(kafka, 6)


def test_a_produce_with_acks_0_hands_its_batch_over_too(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    _, kafka = running
    mod = __import__(load_request_schema(0, 8).__module__, fromlist=["_"])
    part = mod.PartitionProduceData(index=0, records=kafka_batch(RECORDS))
    data = (mod.TopicProduceData(name=TOPIC, partition_data=(part,)),)
    with connect(kafka) as prod, connect(kafka) as cons:
        produce(prod, TOPIC, kafka_batch(RECORDS))
        cons.sendall(fetch_frame(3))
        wait_parked(kafka)
        prod.sendall(_frame(0, 8, 5, acks=0, timeout=30_000, topic_data=data))  # no answer
        got = read_frame(cons)
        # counted just after the answer was written
        wait_for(lambda: kafka.apis.handoff.handed == 1, 10, "the hand-off to be counted")
        assert got == normal_answer(kafka, 3)
        assert produce(prod, TOPIC, kafka_batch(RECORDS)) == 6  # nothing extra came back


def test_an_append_from_the_grpc_side_wakes_the_fetch_the_normal_way(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    from logstream.client import Producer

    broker, kafka = running
    with connect(kafka) as prod, connect(kafka) as cons:
        produce(prod, TOPIC, kafka_batch(RECORDS))
        cons.sendall(fetch_frame(3))
        wait_parked(kafka)
        with Producer(broker.address) as native:
            native.send(TOPIC, b"native", partition=0)
            native.flush()
        got = read_frame(cons)
        assert b"native" in got
        assert got == normal_answer(kafka, 3)
        # the consumer's next Fetch is handed the next Kafka batch, after the native one
        cons.sendall(fetch_frame(4))
        wait_parked(kafka)
        assert produce(prod, TOPIC, kafka_batch(RECORDS)) == 4
        handed = read_frame(cons)
    assert kafka.apis.handoff.handed == 1
    assert handed == normal_answer(kafka, 4)


def test_a_handed_answer_is_counted_once_in_the_fetch_metrics(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    broker, kafka = running
    metrics = broker.broker.metrics

    def out() -> tuple[int, int]:
        counts = metrics.traffic().get((TOPIC, 0), (0, 0, 0, 0))
        return counts[2], counts[3]  # records out, bytes out

    with connect(kafka) as prod, connect(kafka) as cons:
        produce(prod, TOPIC, kafka_batch(RECORDS))
        cons.sendall(fetch_frame(3))
        wait_parked(kafka)
        before = out()
        produce(prod, TOPIC, kafka_batch(RECORDS))
        read_frame(cons)
        handed = out()
        assert kafka.apis.handoff.handed == 1
    normal_answer(kafka, 3)  # the same batch read the normal way
    after = out()
    assert handed[0] - before[0] == len(RECORDS)
    assert handed[1] - before[1] == after[1] - handed[1] > 0
    assert after[0] - handed[0] == len(RECORDS)


def test_a_half_closed_connection_gets_the_handed_answer_then_is_closed(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    """The client shut its sending side while the Fetch waits: as on the normal path, the
    request in hand is answered (here by the hand-off), then the listener closes."""
    _, kafka = running
    with connect(kafka) as prod, connect(kafka) as cons:
        produce(prod, TOPIC, kafka_batch(RECORDS))
        cons.sendall(fetch_frame(3))
        wait_parked(kafka)
        cons.shutdown(socket.SHUT_WR)
        assert produce(prod, TOPIC, kafka_batch(RECORDS)) == 3
        got = read_frame(cons)
        assert cons.recv(1) == b""  # then closed by the listener
    assert kafka.apis.handoff.handed == 1
    assert got == normal_answer(kafka, 3)
