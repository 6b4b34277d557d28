"""Request/reply against a real broker process: Requester, QueueMessage.reply, reply inboxes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from logstream import Admin, Producer, QueueConsumer, Requester, errors
from logstream.protocol.request_reply import CORRELATION_ID_HEADER, REPLY_TO_HEADER, header
from logstream.testing.broker import BrokerProcess
from logstream.testing.wait import wait_for

WORKER = str(Path(__file__).with_name("rr_worker.py"))


@pytest.fixture(scope="module")
def rbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    data = tmp_path_factory.mktemp("rr-broker") / "data"
    with BrokerProcess(data, queue_tick_interval_ms=20) as proc:
        yield proc


@pytest.fixture
def topic(rbroker: BrokerProcess) -> str:
    name = f"rr-{uuid.uuid4().hex[:10]}"
    with Admin(rbroker.address) as admin:
        admin.create_topic(name, partitions=2)
    return name


class Responder:
    """A responder thread in this process: answers ``value + b"!"`` until stopped."""

    def __init__(self, address: str, topic: str, group: str = "", push: bool = False) -> None:
        group = group or f"svc-{topic}"  # one group per topic: the broker is shared
        self.q = QueueConsumer(address, group=group, topics=[topic], max_wait_ms=50, push=push)
        self.stop = threading.Event()
        self.answered = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                batch = self.q.poll(0.05)
            except errors.LogstreamError:
                time.sleep(0.05)
                continue
            for m in batch:
                m.reply((m.value or b"") + b"!")
                m.ack()
                self.answered += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.q.close()


def spawn(*args: str, push: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RR_PUSH": "1" if push else "0"},
    )


def read_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 30.0) -> str:
    """The first stdout line of ``proc`` starting with ``prefix`` (reads in a thread, so the
    wait has a deadline)."""
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(prefix):
                found.append(line.strip())
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    if not found:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"no {prefix!r} line from worker; stderr:\n{err}")
    return found[0]


@pytest.mark.parametrize("push", [False, True], ids=["fetch", "push"])
def test_request_gets_its_reply(rbroker: BrokerProcess, topic: str, push: bool) -> None:
    responder = Responder(rbroker.address, topic, push=push)
    try:
        with Requester(rbroker.address) as r:
            reply = r.request(topic, b"ping", headers={"trace": b"t1"}, timeout=10)
            assert reply.value == b"ping!"
            assert reply.topic == r.inbox
            futures = [r.request_async(topic, b"%d" % i, timeout=20) for i in range(200)]
            assert [f.result().value for f in futures] == [b"%d!" % i for i in range(200)]
            assert r.pending == 0 and r.late_replies == 0
    finally:
        responder.close()


def test_timeout_raises_and_leaves_nothing_pending(rbroker: BrokerProcess, topic: str) -> None:
    with Requester(rbroker.address) as r:
        started = time.monotonic()
        with pytest.raises(errors.RequestTimeoutError, match=f"on {topic} within 0.3 s") as info:
            r.request(topic, b"nobody answers", timeout=0.3)
        elapsed = time.monotonic() - started
        assert 0.29 <= elapsed < 5
        assert isinstance(info.value, errors.RequestTimedOutError)  # in the error tree
        assert errors.for_code(info.value.code) is errors.RequestTimeoutError
        assert r.pending == 0


def test_the_timeout_thread_does_not_wake_for_answered_requests(
    rbroker: BrokerProcess, topic: str
) -> None:
    """Answered requests' deadlines are dropped, not waited for one by one: 60 answered
    requests with a 0.5 s timeout wake the timeout thread a few times, not once each."""
    responder = Responder(rbroker.address, topic)
    try:
        with Requester(rbroker.address) as r:
            for i in range(60):
                assert r.request(topic, b"%d" % i, timeout=0.5).value == b"%d!" % i
            time.sleep(0.7)  # past every request's deadline: a wake-up per deadline shows now
            assert r.pending == 0
            assert r.timer_wakeups <= 10, r.timer_wakeups
    finally:
        responder.close()


def test_late_reply_is_discarded(rbroker: BrokerProcess, topic: str) -> None:
    with (
        Requester(rbroker.address) as r,
        QueueConsumer(rbroker.address, group=f"late-{topic}", topics=[topic]) as q,
    ):
        future = r.request_async(topic, b"slow", timeout=0.3)
        msgs = wait_for(lambda: q.poll(0.1), what="the request")
        with pytest.raises(errors.RequestTimeoutError):
            future.result(10)
        assert r.pending == 0
        msgs[0].reply(b"too late")  # type: ignore[index]
        msgs[0].ack()  # type: ignore[index]
        wait_for(lambda: r.late_replies == 1, what="the late reply to arrive")
        assert r.pending == 0
        # and the requester still works
        responder = Responder(rbroker.address, topic, group=f"late-{topic}")
        try:
            assert r.request(topic, b"again", timeout=10).value == b"again!"
        finally:
            responder.close()


def test_reply_to_a_closed_inbox_is_accepted_and_dropped(
    rbroker: BrokerProcess, topic: str
) -> None:
    with Requester(rbroker.address) as r:
        inbox = r.inbox
    with Producer(rbroker.address, linger_ms=0) as p:
        meta = p.send(inbox, b"nobody listens", headers=[(CORRELATION_ID_HEADER, b"x")]).result(10)
        assert meta.partition == 0


def test_plain_producer_can_answer(rbroker: BrokerProcess, topic: str) -> None:
    """A responder in "any language": read the request, produce the reply with the headers."""
    with (
        Requester(rbroker.address) as r,
        QueueConsumer(rbroker.address, group=f"plain-{topic}", topics=[topic]) as q,
        Producer(rbroker.address, linger_ms=0) as p,
    ):
        future = r.request_async(topic, b"2+2", timeout=20)
        msg = wait_for(lambda: q.poll(0.1), what="the request")[0]  # type: ignore[index]
        reply_to = header(msg.headers, REPLY_TO_HEADER)
        correlation_id = header(msg.headers, CORRELATION_ID_HEADER)
        assert reply_to == r.inbox.encode() and correlation_id
        p.send(reply_to.decode(), b"4", headers=[(CORRELATION_ID_HEADER, correlation_id)]).result(
            10
        )
        msg.ack()
        assert future.result(10).value == b"4"


def test_reply_needs_request_headers(rbroker: BrokerProcess, topic: str) -> None:
    with Producer(rbroker.address, linger_ms=0) as p:
        p.send(topic, b"not a request").result(10)
    with QueueConsumer(rbroker.address, group=f"norq-{topic}", topics=[topic]) as q:
        msg = wait_for(lambda: q.poll(0.1), what="the record")[0]  # type: ignore[index]
        with pytest.raises(errors.InvalidRequestError, match="not a request"):
            msg.reply(b"x")
        msg.ack()


def test_inbox_names_are_reserved(rbroker: BrokerProcess) -> None:
    with (
        Admin(rbroker.address) as admin,
        pytest.raises(errors.InvalidTopicError, match="reply inbox"),
    ):
        admin.create_topic("_inbox." + "a" * 32, partitions=1)
    with (
        Producer(rbroker.address, linger_ms=0, retries=0) as p,
        pytest.raises(errors.InvalidTopicError),
    ):
        p.send("_inbox.not-hex", b"x").result(10)


@pytest.mark.slow
@pytest.mark.parametrize("push", [False, True], ids=["fetch", "push"])
def test_four_requester_processes_two_responder_processes(
    rbroker: BrokerProcess, topic: str, tmp_path: Path, push: bool
) -> None:
    stop = tmp_path / "stop"
    responders = [
        spawn(
            "responder", rbroker.address, topic, f"svc4x-{topic}", f"resp{i}", str(stop), push=push
        )
        for i in range(2)
    ]
    try:
        for proc in responders:
            read_line(proc, "READY")
        requesters = [
            spawn("requester", rbroker.address, topic, f"req{i}", "500") for i in range(4)
        ]
        results = []
        for proc in requesters:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        stop.touch()
        for proc in responders:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    for res in results:
        assert res["nbad"] == 0, res["bad"]
        assert res["ok"] == 500
        assert res["pending"] == 0 and res["late"] == 0
        assert set(res["by"]) <= {"resp0", "resp1"}
    assert sum(sum(res["by"].values()) for res in results) == 2000


@pytest.mark.slow
@pytest.mark.parametrize("push", [False, True], ids=["fetch", "push"])
def test_responder_killed_mid_request_is_answered_by_the_other(
    rbroker: BrokerProcess, topic: str, tmp_path: Path, push: bool
) -> None:
    stop = tmp_path / "stop"
    holder = spawn(
        "responder",
        rbroker.address,
        topic,
        f"kill-{topic}",
        "holder",
        str(stop),
        "hold",
        "1000",
        push=push,
    )
    other: subprocess.Popen[str] | None = None
    try:
        read_line(holder, "READY")
        with Requester(rbroker.address) as r:
            future = r.request_async(topic, b"job", timeout=30)
            read_line(holder, "HOLD")  # the holder has the request and will never answer
            holder.kill()
            holder.wait(10)
            other = spawn(
                "responder", rbroker.address, topic, f"kill-{topic}", "other", str(stop), push=push
            )
            read_line(other, "READY")
            reply = future.result(30)
            assert reply.value == b"job|other"
            assert r.late_replies == 0
    finally:
        stop.touch()
        holder.kill()
        if other is not None:
            try:
                other.wait(20)
            except subprocess.TimeoutExpired:
                other.kill()


@pytest.mark.slow
@pytest.mark.parametrize("push", [False, True], ids=["fetch", "push"])
def test_requests_work_again_after_a_broker_restart(tmp_path: Path, push: bool) -> None:
    with BrokerProcess(tmp_path / "data", queue_tick_interval_ms=20) as proc:
        with Admin(proc.address) as admin:
            admin.create_topic("svc", partitions=1)
        responder = Responder(proc.address, "svc", push=push)
        try:
            with Requester(proc.address) as r:
                assert r.request("svc", b"a", timeout=10).value == b"a!"
                proc.restart(kill=True)

                def answered() -> bool:
                    try:
                        return r.request("svc", b"b", timeout=2).value == b"b!"
                    except errors.LogstreamError:
                        return False

                wait_for(answered, timeout=60, what="a reply after the restart")
                assert r.reopened >= 1
                assert r.pending == 0
        finally:
            responder.close()


def test_an_open_inbox_cannot_be_taken_over(rbroker: BrokerProcess, topic: str) -> None:
    """Inbox names travel in request headers; reading them must not let anyone else open
    the inbox and receive its replies."""
    from logstream.client.transport import Transport
    from logstream.protocol import log_pb2

    responder = Responder(rbroker.address, topic)
    try:
        transport = Transport(rbroker.address)
        with Requester(rbroker.address) as r:
            thief = transport.subscribe(
                log_pb2.SubscribeRequest(
                    partitions=[log_pb2.FetchPartition(topic=r.inbox, partition=0)]
                )
            )
            with pytest.raises(errors.InvalidRequestError, match="already open"):
                next(iter(thief))
            assert r.request(topic, b"still mine", timeout=10).value == b"still mine!"
        transport.close()
    finally:
        responder.close()
