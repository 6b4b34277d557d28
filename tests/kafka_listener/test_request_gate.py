"""The Kafka listener reads a frame's body only once its size has room in the broker's
request-byte gate (the one gRPC's Produce and ProduceStream pass), so many connections
sending large frames at once cannot take the broker past its cap; a waiting frame is held
back by TCP, not refused."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from logstream.broker.request_gate import AdmissionGate
from logstream.kafka import KafkaListener
from logstream.testing.broker import run_broker
from tests.kafka_listener.test_bad_input import api_versions_frame, read_frame


def test_a_frame_waits_for_room_in_the_gate_then_is_answered(tmp_path: Path) -> None:
    gate = AdmissionGate(1000)
    with run_broker(tmp_path) as running:
        kafka = KafkaListener(running.broker, "127.0.0.1:0", request_gate=gate)
        kafka.start()
        try:
            blocker = gate.try_acquire(1000)
            assert blocker is not None
            with socket.create_connection(("127.0.0.1", kafka.port), timeout=10) as sock:
                sock.sendall(api_versions_frame(7))
                sock.settimeout(0.3)
                try:
                    sock.recv(1)
                    raise AssertionError("answered while the gate had no room")
                except TimeoutError:
                    pass
                assert gate.waiting == 1
                blocker.release()
                sock.settimeout(10)
                assert read_frame(sock)[:4] == (7).to_bytes(4, "big")  # its correlation id
            deadline = time.monotonic() + 5  # given back once the answer is written
            while gate.in_use and time.monotonic() < deadline:
                time.sleep(0.01)
            assert gate.in_use == 0
        finally:
            kafka.stop()
