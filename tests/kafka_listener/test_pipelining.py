"""Pipelined Produce requests do not hold back the Fetch their first record wakes.

A Fetch is parked on one connection, then a burst of one-record Produce requests arrives
in one write on another (what librdkafka sends with ``max.in.flight`` > 1). The order in
which the listener wrote the answers is read from the kernel's receive timestamps
(SO_TIMESTAMPNS) of the client sockets, so it does not depend on when the test process
gets the CPU: the Fetch's answer must be written before the burst's last Produce answer,
and, for a single Produce, before that Produce's own answer (the record reaches its
consumer first, as Kafka completes the delayed fetches an append satisfies before it
answers the produce).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.bench_kafka_requests import TOPIC, fetch_frame, produce_frame
from logstream.kafka.listener import KafkaListener
from tests.kafka_listener.conftest import listener_in_process

BURST = 12
_TIMESPEC = struct.Struct("@qq")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python 3.11 lacks it


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[KafkaListener]:
    with listener_in_process(tmp_path) as (_, kafka):
        yield kafka


def _connect(listener: KafkaListener) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", listener.port), timeout=20)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def _receive(sock: socket.socket, nbytes: int) -> list[tuple[int, int]]:
    """Read until ``nbytes`` came; (kernel arrival time in ns, byte count after the chunk)."""
    got, chunks = 0, []
    while got < nbytes:
        data, ancillary, _, _ = sock.recvmsg(nbytes - got, socket.CMSG_SPACE(_TIMESPEC.size))
        if not data:
            raise ConnectionError("the listener closed the connection")
        got += len(data)
        stamp = next(
            (_TIMESPEC.unpack(d[: _TIMESPEC.size]) for lvl, kind, d in ancillary
             if lvl == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS),
            None,
        )  # fmt: skip
        assert stamp is not None, "no receive timestamp"
        chunks.append((stamp[0] * 1_000_000_000 + stamp[1], got))
    return chunks


def _frame_size(sock: socket.socket) -> int:
    return 4 + struct.unpack(">i", sock.recv(4, socket.MSG_PEEK | socket.MSG_WAITALL))[0]


def test_a_woken_fetch_answers_before_a_pipelined_burst_of_produces_ends(
    listener: KafkaListener,
) -> None:
    value = b"v" * 100
    with _connect(listener) as prod, _connect(listener) as cons:
        prod.sendall(produce_frame(0, value))  # creates the topic; offset 0
        _receive(prod, _frame_size(prod))
        cons.sendall(fetch_frame(1, 1))
        time.sleep(0.2)  # the fetch is parked: nothing at offset 1 yet
        prod.sendall(b"".join(produce_frame(2 + i, value) for i in range(BURST)))
        fetched_at = _receive(cons, _frame_size(cons))[0][0]
        answers = []
        for _ in range(BURST):
            answers.append(_receive(prod, _frame_size(prod))[-1][0])
    assert TOPIC  # the frames name the benchmark's topic, created by the first produce
    assert fetched_at < answers[-1], (
        "the fetch was answered only after every produce of the burst: "
        f"{(fetched_at - answers[-1]) / 1e3:.0f} us after the last"
    )


def test_a_woken_fetch_is_answered_before_the_produce_that_woke_it(
    listener: KafkaListener,
) -> None:
    value = b"v" * 100
    with _connect(listener) as prod, _connect(listener) as cons:
        prod.sendall(produce_frame(0, value))  # creates the topic; offset 0
        _receive(prod, _frame_size(prod))
        for i in range(1, 6):
            cons.sendall(fetch_frame(i, i))
            time.sleep(0.1)  # the fetch is parked: nothing at offset i yet
            prod.sendall(produce_frame(i, value))
            fetched_at = _receive(cons, _frame_size(cons))[0][0]
            produced_at = _receive(prod, _frame_size(prod))[0][0]
            assert fetched_at < produced_at, (
                f"round {i}: the fetch was answered {(fetched_at - produced_at) / 1e3:.0f} us "
                "after the produce that woke it"
            )


def test_large_produces_pipelined_behind_a_pooled_request_are_all_answered(
    listener: KafkaListener,
) -> None:
    """Bytes that arrive while a request is in hand stop the reading past 128 KiB; once
    nothing is in hand, reading resumes even though the buffer holds more than that (the
    rest of a large frame is needed to go on)."""
    client = b"test"
    api_versions = struct.pack(">hhih", 18, 0, 100, len(client)) + client
    frames = struct.pack(">i", len(api_versions)) + api_versions  # answered on the pool
    frames += b"".join(produce_frame(i, bytes([i]) * 300_000) for i in range(4))
    with _connect(listener) as prod:
        prod.sendall(frames)  # the socket's timeout fails it if the listener stops reading
        correlation_ids = []
        for _ in range(5):
            size = _frame_size(prod)
            frame = prod.recv(size, socket.MSG_WAITALL)
            assert len(frame) == size
            correlation_ids.append(struct.unpack_from(">i", frame, 4)[0])
    assert correlation_ids == [100, 0, 1, 2, 3]
