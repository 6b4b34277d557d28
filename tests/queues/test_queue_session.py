"""The push session (``Queue/Session``, decision 0037) against a real broker process: records
pushed on append with no request in between, credit respected, release on disconnect and
on kill -9 of the member's process, and ``QueueConsumer(push=True)`` end to end."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from queue_helpers import admin, make_topic

from logstream import Producer, QueueConsumer, errors
from logstream.client.transport import Transport
from logstream.protocol import queue_pb2
from logstream.testing.broker import BrokerProcess
from logstream.testing.wait import wait_for

MEMBER = Path(__file__).with_name("session_member.py")


class RawSession:
    """A session driven by hand over the generated stub: what we send, what comes back."""

    def __init__(self, address: str, group: str, member: str, credit: int) -> None:
        self.group, self.member = group, member
        self._out: queue.SimpleQueue[queue_pb2.QueueSessionRequest | None] = queue.SimpleQueue()
        self.responses: queue.SimpleQueue[queue_pb2.QueueSessionResponse] = queue.SimpleQueue()
        self.transport = Transport(address)
        self.send(credit=credit)
        self.call = self.transport.queue.Session(self._requests())
        self.error: BaseException | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[queue_pb2.QueueSessionRequest]:
        while (m := self._out.get()) is not None:
            yield m

    def _read(self) -> None:
        try:
            for r in self.call:
                self.responses.put(r)
        except Exception as exc:
            self.error = exc

    def send(self, **fields: Any) -> None:
        self._out.put(
            queue_pb2.QueueSessionRequest(group=self.group, member_id=self.member, **fields)
        )

    def next(self, timeout: float = 10.0) -> queue_pb2.QueueSessionResponse:
        return self.responses.get(timeout=timeout)

    def records(self, want: int, timeout: float = 10.0) -> list[int]:
        """Offsets pushed until ``want`` arrived (fails on the deadline)."""
        got: list[int] = []
        deadline = time.monotonic() + timeout
        while len(got) < want:
            r = self.next(max(deadline - time.monotonic(), 0.01))
            got += [off for qr in r.records for off in qr.offsets]
        return got

    def close(self) -> None:
        self.call.cancel()
        self._reader.join(10)
        self.transport.close()


def _depth(address: str, group: str) -> Any:
    return admin(address).describe_queue_group(group).total


def test_records_are_pushed_as_they_are_appended(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 1, 0)
    admin(qbroker.address).create_queue_group(name, topics=[name])
    s = RawSession(qbroker.address, name, "m1", credit=10)
    try:
        assert s.next().answered == 1  # the opening message, answered alone after a moment
        with Producer(qbroker.address) as p:
            for i in range(3):
                p.send(name, f"v{i}".encode()).result(10)
                # nothing more is sent on the stream: the append alone brings each record
                assert s.records(1) == [i]
    finally:
        s.close()


def test_never_more_records_in_flight_than_granted(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 1, 10)
    admin(qbroker.address).create_queue_group(name, topics=[name])
    s = RawSession(qbroker.address, name, "m1", credit=3)
    try:
        assert sorted(s.records(3)) == [0, 1, 2]
        # a flushed message is answered after the broker ran its acquire again: with no
        # credit left, its answer carries nothing more
        s.send(flush=True)
        while (r := s.next()).answered == 0:
            assert not r.records
        assert not r.records
        assert _depth(qbroker.address, name).acquired == 3
        s.send(credit=2, settle=[queue_pb2.Settlement(topic=name, partition=0, offsets=[0])])
        assert sorted(s.records(2)) == [3, 4]
        s.send(flush=True)
        while (r := s.next()).answered == 0:
            assert not r.records
        assert not r.records
        d = _depth(qbroker.address, name)
        assert (d.acquired, d.acknowledged) == (4, 1)
    finally:
        s.close()


@pytest.mark.serial  # timing-sensitive: run alone by `make test` (docs/decisions/0040)
def test_a_backlog_larger_than_one_push_comes_in_pushes_back_to_back(
    qbroker: BrokerProcess, name: str
) -> None:
    """A push is cut at MAX_PUSH_RECORDS (500); with credit left the session pushes the rest
    at once, with nothing more from the member and no new append (not at its idle check,
    1 s later)."""
    make_topic(qbroker.address, name, 1, 1_200)
    admin(qbroker.address).create_queue_group(name, topics=[name])
    s = RawSession(qbroker.address, name, "m1", credit=1_100)
    try:
        first = s.records(500)
        t0 = time.monotonic()
        rest = s.records(600, timeout=10)
        elapsed = time.monotonic() - t0
        assert sorted(first + rest) == list(range(1_100))
        assert elapsed < 0.9, f"the rest came after {elapsed:.3f} s"
        assert _depth(qbroker.address, name).acquired == 1_100
    finally:
        s.close()


@pytest.mark.serial  # timing-sensitive: run alone by `make test` (docs/decisions/0040)
def test_a_settlement_alone_is_answered_after_its_linger(qbroker: BrokerProcess, name: str) -> None:
    """An ack with credit left does not wake the session at once (it waits to ride the next
    push), but nothing needs to come: its answer goes out after the linger (5 ms), well
    before the session's idle check (1 s) would find it."""
    make_topic(qbroker.address, name, 1, 1)
    admin(qbroker.address).create_queue_group(name, topics=[name])
    s = RawSession(qbroker.address, name, "m1", credit=10)
    try:
        assert s.records(1) == [0]
        while s.responses.qsize():  # the opening message's answer, if it came alone
            s.next()
        t0 = time.monotonic()
        s.send(settle=[queue_pb2.Settlement(topic=name, partition=0, offsets=[0])])
        r = s.next()
        elapsed = time.monotonic() - t0
        assert (r.answered, list(r.records), list(r.results)) == (1, [], [])
        assert elapsed < 0.6, f"answered after {elapsed:.3f} s"
        assert _depth(qbroker.address, name).acknowledged == 1
    finally:
        s.close()


def test_disconnect_releases_what_the_member_held(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 1, 4)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=600_000)
    s = RawSession(qbroker.address, name, "m1", credit=4)
    assert sorted(s.records(4)) == [0, 1, 2, 3]
    s.close()
    wait_for(lambda: _depth(qbroker.address, name).acquired == 0, what="the release")
    with QueueConsumer(qbroker.address, group=name, max_records=10) as q:
        again = wait_for(lambda: q.poll(0.5), what="the released records")
        assert all(m.delivery_count == 2 for m in again)
        for m in again:
            m.ack()


def test_session_messages_must_name_one_member(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 1, 0)
    admin(qbroker.address).create_queue_group(name, topics=[name])
    s = RawSession(qbroker.address, name, "m1", credit=1)
    try:
        s._out.put(queue_pb2.QueueSessionRequest(group=name, member_id="someone-else"))
        s._reader.join(10)
        assert s.error is not None and "same group and member_id" in str(s.error)
    finally:
        s.close()


def test_unknown_group_ends_the_session_with_its_error(qbroker: BrokerProcess) -> None:
    s = RawSession(qbroker.address, "no-such-queue-group", "m1", credit=1)
    s._reader.join(10)
    assert s.error is not None and "GROUP_ID_NOT_FOUND" in str(s.error)
    s.close()


def test_push_consumer_works_a_queue_and_replies(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 2, 300)
    with QueueConsumer(qbroker.address, group=name, topics=[name], push=True) as q:
        seen: set[bytes] = set()
        end = time.monotonic() + 30
        while len(seen) < 300 and time.monotonic() < end:
            for m in q.poll(0.5):
                seen.add(m.value or b"")
                m.ack()
        assert len(seen) == 300
        assert q.commit() == []
    d = _depth(qbroker.address, name)
    assert (d.acknowledged, d.acquired) == (300, 0)


@pytest.mark.slow
def test_kill_9_of_a_push_member_releases_its_records_at_once(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 5)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=600_000)
    proc = subprocess.Popen(
        [sys.executable, str(MEMBER), qbroker.address, name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the member prints once it holds records
        assert line.startswith("HOLDING"), proc.stderr.read() if proc.stderr else ""
        assert _depth(qbroker.address, name).acquired == 5
        proc.kill()
        proc.wait(10)
        # the lease is 10 minutes: only the broken stream can give the records back
        wait_for(lambda: _depth(qbroker.address, name).acquired == 0, what="the release")
        with QueueConsumer(qbroker.address, group=name, max_records=10) as q:
            got: list[Any] = []
            wait_for(lambda: got.extend(q.poll(0.5)) or len(got) == 5, what="redelivery")
            assert sorted(m.offset for m in got) == [0, 1, 2, 3, 4]
            for m in got:
                m.ack()
    finally:
        proc.kill()
        proc.wait(10)


def test_push_consumer_reopens_after_the_session_breaks(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "data", queue_tick_interval_ms=20) as proc:
        make_topic(proc.address, "jobs", 1, 1)
        with QueueConsumer(proc.address, group="g", topics=["jobs"], push=True) as q:
            first = wait_for(lambda: q.poll(0.5), what="the first record")
            first[0].ack()
            assert q.commit() == []
            proc.restart(kill=True)
            with Producer(proc.address) as p:
                p.send("jobs", b"after").result(10)

            def polled() -> list[Any]:
                try:
                    return q.poll(0.5)
                except errors.LogstreamError:
                    return []

            again = wait_for(polled, timeout=60, what="a record after the restart")
            assert [m.value for m in again] == [b"after"]
            again[0].ack()
