"""A one-partition Fetch waits as a registration, not a task (``kafka/parked_fetch.py``),
with the semantics of the broker's fetch coroutine: woken by an append on the listener's
loop or from another thread, by the deadline (answered with a fresh read), kept waiting
when an append brings less than ``min_bytes``; a disconnect frees its waiter slot and
registration. A real listener on a loopback port, plain sockets, and the native client
for appends from another thread.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from logstream import Producer
from logstream.kafka.listener import KafkaListener
from logstream.testing.broker import RunningBroker
from logstream.testing.wait import wait_for
from tests.kafka_listener.test_handoff import (
    TOPIC,
    connect,
    fetch_frame,
    normal_answer,
    read_frame,
    wait_parked,
)
from tests.kafka_listener.test_sent_batches import RECORDS, kafka_batch, produce


def tasks_on_loop(kafka: KafkaListener) -> int:
    """The listener's own tasks on its loop (not asyncio's short-lived accept tasks)."""

    async def count() -> int:
        me = asyncio.current_task()
        codes = [getattr(t.get_coro(), "cr_code", None) for t in asyncio.all_tasks() if t is not me]
        return sum(1 for code in codes if code is not None and "/logstream/" in code.co_filename)

    assert kafka._loop is not None
    return asyncio.run_coroutine_threadsafe(count(), kafka._loop).result(10)


def free_slots(broker: RunningBroker) -> int:
    return int(broker.broker.waiter_slots._value)


def wait_idle(broker: RunningBroker, slots: int, timeout_s: float = 10.0) -> None:
    wait_for(
        lambda: not broker.broker.notifier.registered() and free_slots(broker) == slots,
        timeout_s,
        "the parked Fetch to be released",
    )


def test_a_parked_fetch_holds_no_task_and_releases_what_it_holds(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    broker, kafka = running
    broker.broker.manager.create_topic(TOPIC, 1, {})
    slots = free_slots(broker)
    with connect(kafka) as prod, connect(kafka) as cons:
        idle = tasks_on_loop(kafka)
        cons.sendall(fetch_frame(0))
        wait_parked(kafka)
        assert broker.broker.notifier.registered() == 1
        assert free_slots(broker) == slots - 1
        assert tasks_on_loop(kafka) == idle  # the task-based wait added one here
        produce(prod, TOPIC, kafka_batch(RECORDS))
        got = read_frame(cons)
        assert kafka.apis.handoff.handed == 1
        wait_idle(broker, slots)
    assert got == normal_answer(kafka, 0)


def test_the_deadline_answers_with_a_read_made_then(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    broker, kafka = running
    broker.broker.manager.create_topic(TOPIC, 1, {})
    slots = free_slots(broker)
    with connect(kafka) as cons:
        started = time.monotonic()
        cons.sendall(fetch_frame(0, max_wait=300))
        got = read_frame(cons)
        assert time.monotonic() - started >= 0.29
        wait_idle(broker, slots)
    assert got == normal_answer(kafka, 0)


def test_an_append_from_another_thread_wakes_it(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    broker, kafka = running
    broker.broker.manager.create_topic(TOPIC, 1, {})
    with connect(kafka) as cons, Producer(broker.address) as producer:
        cons.sendall(fetch_frame(0, max_wait=20_000))
        wait_parked(kafka)
        started = time.monotonic()
        producer.send(TOPIC, value=b"v" * 100, partition=0).result(10)
        got = read_frame(cons)
        assert time.monotonic() - started < 10  # woken, not the 20 s deadline
    assert kafka.apis.handoff.handed == 0
    assert got == normal_answer(kafka, 0)


def test_less_than_min_bytes_keeps_it_waiting_until_enough(
    running: tuple[RunningBroker, KafkaListener],
) -> None:
    broker, kafka = running
    broker.broker.manager.create_topic(TOPIC, 1, {})
    with connect(kafka) as prod, connect(kafka) as cons:
        produce(prod, TOPIC, kafka_batch(RECORDS))
        stored = len(broker.broker.get_log(TOPIC, 0).read(0, 1 << 20))
        want = 2 * stored + 1  # three batches
        cons.sendall(fetch_frame(0, max_wait=20_000, min_bytes=want))
        wait_parked(kafka)
        reads = kafka.apis.fetch_handler.reads
        produce(prod, TOPIC, kafka_batch(RECORDS))  # two batches: not enough
        deadline = time.monotonic() + 10
        while kafka.apis.fetch_handler.reads == reads or not broker.broker.notifier.registered():
            assert time.monotonic() < deadline, "not woken and waiting again"
            time.sleep(0.005)  # woken, read again, registered again
        assert kafka.apis.handoff.waiting(TOPIC, 0)
        cons.settimeout(0)
        with pytest.raises(BlockingIOError):
            cons.recv(1)  # not answered
        cons.settimeout(20)
        produce(prod, TOPIC, kafka_batch(RECORDS))  # three: enough
        got = read_frame(cons)
    assert kafka.apis.handoff.handed == 0
    assert got == normal_answer(kafka, 0, min_bytes=want)


@pytest.mark.parametrize("then_produce", [False, True])
def test_a_disconnect_releases_it(
    running: tuple[RunningBroker, KafkaListener], then_produce: bool
) -> None:
    broker, kafka = running
    broker.broker.manager.create_topic(TOPIC, 1, {})
    slots = free_slots(broker)
    with connect(kafka) as cons:
        cons.sendall(fetch_frame(0, max_wait=20_000))
        wait_parked(kafka)
        # a reset, not a FIN: after a FIN the listener still answers the request in hand
        cons.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_idle(broker, slots)
    assert not kafka.apis.handoff.waiting(TOPIC, 0)
    if then_produce:  # nothing is answered on the closed connection, nothing breaks
        with connect(kafka) as prod:
            assert produce(prod, TOPIC, kafka_batch(RECORDS)) == 0
        assert kafka.apis.handoff.handed == 0
