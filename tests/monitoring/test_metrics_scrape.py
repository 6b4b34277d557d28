"""/metrics of a real broker process, parsed with the Prometheus text parser: the values
follow what producers and consumers do."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from monitoring_helpers import Monitored, Scrape, http_get, start_monitored

from logstream import Admin, Consumer, GroupAdmin, Producer, QueueConsumer
from logstream.errors import TopicAlreadyExistsError
from logstream.types import TopicPartition


def _wait_for(monitored: Monitored, check: object, timeout: float = 15.0) -> Scrape:
    deadline = time.monotonic() + timeout
    while True:
        scrape = monitored.scrape()
        if check(scrape):  # type: ignore[operator]
            return scrape
        if time.monotonic() > deadline:
            raise AssertionError("the scrape never showed the expected values")
        time.sleep(0.05)


def test_health_and_readiness(monitored: Monitored) -> None:
    assert http_get(f"http://{monitored.http}/healthz") == (200, "ok\n")
    assert http_get(f"http://{monitored.http}/readyz") == (200, "ready\n")
    status, _ = http_get(f"http://{monitored.http}/nope")
    assert status == 404
    scrape = monitored.scrape()
    assert scrape.value("logstream_ready") == 1.0
    assert scrape.value("logstream_starting") == 0.0
    assert "process_resident_memory_bytes" in scrape.families


def test_produce_and_consume_move_the_counters(monitored: Monitored) -> None:
    admin = Admin(monitored.address)
    admin.create_topic("orders", partitions=2)
    before = monitored.scrape()
    assert before.value("logstream_topic_records_in_total", topic="orders") == 0
    assert before.value("logstream_topic_partitions", topic="orders") == 2

    producer = Producer(monitored.address)
    for i in range(300):
        producer.send("orders", b"v%05d" % i, partition=i % 2)
    producer.flush(10)
    producer.close()

    after = monitored.scrape()
    assert after.value("logstream_topic_records_in_total", topic="orders") == 300
    in_bytes = after.value("logstream_topic_bytes_in_total", topic="orders")
    assert in_bytes > 300 * 6  # values plus batch headers
    per_partition = [
        after.value("logstream_partition_records_in_total", topic="orders", partition=str(p))
        for p in range(2)
    ]
    assert per_partition == [150, 150]
    assert after.value("logstream_partition_log_end_offset", topic="orders", partition="0") == 150
    assert after.value("logstream_topic_log_bytes", topic="orders") >= in_bytes
    assert after.value("logstream_partition_segments", topic="orders", partition="1") == 1
    produce_calls = after.get("logstream_rpc_requests_total", method="Log.Produce") + after.get(
        "logstream_rpc_requests_total", method="Log.ProduceStream"
    )
    assert produce_calls >= 1
    assert after.value("logstream_producer_ids_allocated_total") >= 0

    consumer = Consumer(monitored.address, group="readers", auto_offset_reset="earliest")
    tps = [TopicPartition("orders", p) for p in range(2)]
    consumer.assign(tps)
    got = 0
    deadline = time.monotonic() + 15
    while got < 300 and time.monotonic() < deadline:
        got += len(consumer.poll(timeout=0.5))
    assert got == 300
    consumer.commit({TopicPartition("orders", 0): 100, TopicPartition("orders", 1): 150})
    consumer.close()

    final = _wait_for(
        monitored,
        lambda s: s.get("logstream_rpc_duration_seconds_count", method="Group.CommitOffsets") >= 1,
    )
    assert final.value("logstream_topic_records_out_total", topic="orders") >= 300
    assert final.value("logstream_topic_bytes_out_total", topic="orders") >= in_bytes
    lag = final.value("logstream_group_lag_records", group="readers", topic="orders", partition="0")
    assert lag == 50
    assert (
        final.value("logstream_group_lag_records", group="readers", topic="orders", partition="1")
        == 0
    )
    assert final.value("logstream_group_total_lag_records", group="readers") == 50
    assert final.value("logstream_group_max_lag_seconds", group="readers") >= 0
    assert (
        final.value("logstream_group_lag_seconds", group="readers", topic="orders", partition="1")
        == 0
    )
    assert final.value("logstream_rpc_requests_total", method="Group.CommitOffsets") >= 1
    hist = final.value("logstream_rpc_duration_seconds_count", method="Admin.CreateTopics")
    assert hist == 1
    admin.close()


def test_errors_are_counted_by_method_and_code(monitored: Monitored) -> None:
    admin = Admin(monitored.address)
    admin.create_topic("twice", partitions=1)
    try:
        admin.create_topic("twice", partitions=1)
    except TopicAlreadyExistsError:
        pass  # a per-topic error inside a successful answer, not an RPC error
    admin.close()
    import grpc

    from logstream.protocol import log_pb2, log_pb2_grpc

    channel = grpc.insecure_channel(monitored.address)
    stub = log_pb2_grpc.LogStub(channel)
    try:
        stub.Produce(log_pb2.ProduceRequest(acks=99), timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    else:
        raise AssertionError("acks=99 was accepted")
    channel.close()
    # The client has its answer before the handler's coroutine finishes: wait for the count.
    scrape = _wait_for(monitored, lambda s: s.series("logstream_rpc_errors_total"))
    assert scrape.series("logstream_rpc_errors_total") == [
        {"method": "Log.Produce", "code": "INVALID_REQUIRED_ACKS"}
    ]
    assert (
        scrape.value(
            "logstream_rpc_errors_total", method="Log.Produce", code="INVALID_REQUIRED_ACKS"
        )
        == 1
    )


def test_open_streams_and_connections(monitored: Monitored) -> None:
    consumer = Consumer(monitored.address, auto_offset_reset="earliest")
    Admin(monitored.address).create_topic("live", partitions=1)
    consumer.assign([TopicPartition("live", 0)])
    consumer.poll(timeout=0.2)
    scrape = _wait_for(
        monitored,
        lambda s: s.get("logstream_rpc_open_streams", method="Log.Subscribe") >= 1,
    )
    assert scrape.value("logstream_connections") >= 1
    consumer.close()
    _wait_for(
        monitored,
        lambda s: s.get("logstream_rpc_open_streams", method="Log.Subscribe") == 0,
    )


def test_per_partition_series_are_bounded(tmp_path: Path) -> None:
    m = start_monitored(tmp_path / "data", metrics_partition_series_limit=3)
    try:
        Admin(m.address).create_topic("wide", partitions=6)
        scrape = m.scrape()
        # __consumer_offsets-0 sorts first: it takes one of the three (no queue group, so
        # no __queue_state)
        assert len(scrape.series("logstream_partition_log_bytes")) == 3
        assert scrape.value("logstream_metrics_series_omitted", family="partition") == 4
        assert scrape.value("logstream_topic_partitions", topic="wide") == 6
    finally:
        m.proc.terminate()


def test_http_listener_is_off_by_default(tmp_path: Path) -> None:
    from logstream.testing.broker import BrokerProcess

    proc = BrokerProcess(tmp_path / "data").start()
    try:
        assert "http listening" not in proc.output()
    finally:
        assert proc.terminate() == 0


def test_inbox_gauges_and_counters(monitored: Monitored) -> None:
    from logstream import Requester
    from logstream.protocol.request_reply import CORRELATION_ID_HEADER

    before = monitored.scrape()
    with Requester(monitored.address) as r:
        inbox = r.inbox
        _wait_for(monitored, lambda s: s.value("logstream_inboxes_open") >= 1)
        with Producer(monitored.address, linger_ms=0) as p:
            p.send(inbox, b"unmatched", headers=[(CORRELATION_ID_HEADER, b"x")]).result(10)
        _wait_for(monitored, lambda s: r.late_replies == 1)
    with Producer(monitored.address, linger_ms=0) as p:  # the inbox is closed now
        p.send(inbox, b"late", headers=[(CORRELATION_ID_HEADER, b"y")]).result(10)
    after = monitored.scrape()
    delivered = "logstream_inbox_replies_delivered_total"
    discarded = "logstream_inbox_replies_discarded_total"
    assert after.value(delivered) - before.value(delivered) == 1
    assert after.value(discarded) - before.value(discarded) == 1
    assert after.value("logstream_inbox_queued_bytes") == 0


def test_queue_group_depth_in_flight_and_dead_letters_in_a_scrape(monitored: Monitored) -> None:
    """The broker registers its queue groups as a metrics source: the gauges follow a
    member's fetch and reject in a real broker process."""
    with Admin(monitored.address) as admin:
        admin.create_topic("jobs", partitions=1)
    with Producer(monitored.address) as producer:
        for i in range(5):
            producer.send("jobs", b"job-%d" % i, partition=0)
        producer.flush(10)
    group_admin = GroupAdmin(monitored.address)
    group_admin.create_queue_group("workers", topics=["jobs"], lease_ms=60_000)
    scrape = _wait_for(
        monitored, lambda s: s.get("logstream_queue_depth", -1, group="workers") == 5
    )
    assert scrape.value("logstream_queue_in_flight", group="workers") == 0

    with QueueConsumer(monitored.address, group="workers", max_records=2) as q:
        held: list = []
        deadline = time.monotonic() + 10
        while len(held) < 2 and time.monotonic() < deadline:
            held += q.poll(0.5)
        assert len(held) == 2
        held[0].reject(reason="poison")
        assert q.commit() == []
        scrape = _wait_for(
            monitored, lambda s: s.get("logstream_queue_dead_lettered_total", group="workers") == 1
        )
        assert scrape.value("logstream_queue_in_flight", group="workers") == 1
        assert scrape.value("logstream_queue_available", group="workers") == 3
        assert scrape.value("logstream_queue_depth", group="workers") == 4
        assert scrape.value("logstream_queue_oldest_unfinished_age_seconds", group="workers") >= 0
        held[1].ack()
        assert q.commit() == []
    group_admin.close()


def test_quota_throttle_and_hold_are_exported(tmp_path: Path) -> None:
    import grpc

    from logstream.broker.security.credentials import CredentialStore
    from logstream.broker.security.quotas import Quota, QuotaFile
    from logstream.codec import encode_batch
    from logstream.protocol import log_pb2, log_pb2_grpc

    data = tmp_path / "data"
    alice = CredentialStore(data).add("alice")
    QuotaFile(data).write({"alice": Quota(produce_bytes_per_s=100_000)})
    monitored = start_monitored(data, auth=True)
    try:
        Admin(monitored.address, token=alice).create_topic("metered")
        assert monitored.scrape().value("logstream_quota_throttle_seconds_total") == 0
        channel = grpc.insecure_channel(monitored.address)
        request = log_pb2.ProduceRequest(
            partitions=[
                log_pb2.PartitionProduceData(
                    topic="metered", partition=0, batches=[encode_batch([b"x" * 100_000] * 3)]
                )
            ]
        )
        md = (("authorization", f"Bearer {alice}"),)
        produce = log_pb2_grpc.LogStub(channel).Produce
        first = produce(request, metadata=md, timeout=30)  # 300 kB at 100 kB/s: ~2.9 s
        produce(request, metadata=md, timeout=30)  # sent at once: held back by the broker
        channel.close()
        scrape = monitored.scrape()
        assert scrape.value("logstream_quota_throttle_seconds_total") >= 2.0
        held = scrape.value("logstream_quota_held_seconds_total")
        assert 0.5 * first.throttle_time_ms / 1000 <= held <= 1.5 * first.throttle_time_ms / 1000
    finally:
        monitored.proc.terminate()


def test_the_request_gate_counts_are_exported(tmp_path: Path) -> None:
    """Idle ProduceStreams queue for the gate (each first read reserves a whole message);
    a message read after its reservation was given back, and one larger than the reservation
    its read made, are counted as unreserved bytes."""
    import queue

    import grpc

    from logstream.codec import encode_batch
    from logstream.protocol import log_pb2, log_pb2_grpc

    mib = 1 << 20
    monitored = start_monitored(
        tmp_path / "data", max_message_bytes=mib, max_request_bytes_in_flight=mib
    )
    channel = grpc.insecure_channel(monitored.address)
    senders: list[queue.Queue[log_pb2.ProduceRequest | None]] = []
    try:
        Admin(monitored.address).create_topic("gated")
        rest = monitored.scrape()
        assert rest.value("logstream_request_gate_limit_bytes") == mib
        assert rest.value("logstream_request_gate_reserved_bytes") == 0
        assert rest.value("logstream_request_gate_waits_total") == 0
        assert rest.value("logstream_request_gate_unreserved_bytes_total") == 0
        stub = log_pb2_grpc.LogStub(channel)

        def open_stream() -> Any:
            sender: queue.Queue[log_pb2.ProduceRequest | None] = queue.Queue()
            senders.append(sender)
            return stub.ProduceStream(iter(sender.get, None), timeout=60)

        first = open_stream()
        _wait_for(monitored, lambda s: s.value("logstream_request_gate_reserved_bytes") == mib)
        # each waits until the reservation before it is parked (1 s)
        others = [open_stream() for _ in range(5)]  # kept: a dropped call is cancelled
        _wait_for(monitored, lambda s: s.value("logstream_request_gate_waiters") >= 1)
        settled = _wait_for(
            monitored,
            lambda s: (
                s.value("logstream_request_gate_waiters") == 0
                and s.value("logstream_request_gate_parked") == 1
            ),
        )
        assert settled.value("logstream_request_gate_waits_total") >= 5
        assert settled.value("logstream_request_gate_reserved_bytes") == mib  # the last one's

        def request(value_bytes: int) -> log_pb2.ProduceRequest:
            batch = encode_batch([b"v" * value_bytes])
            data = log_pb2.PartitionProduceData(topic="gated", partition=0, batches=[batch])
            return log_pb2.ProduceRequest(partitions=[data])

        # the first stream's reservation was given back to a waiter: its message arrives
        # unreserved; its next read reserves that message's size
        small, large = request(100_000), request(300_000)
        senders[0].put(small)
        assert next(first).partitions[0].error_code == 0
        after_small = monitored.scrape()
        unreserved = after_small.value("logstream_request_gate_unreserved_bytes_total")
        assert unreserved == small.ByteSize()
        senders[0].put(large)  # larger than that reservation: the excess is unreserved
        assert next(first).partitions[0].error_code == 0
        final = _wait_for(
            monitored,
            lambda s: s.value("logstream_request_gate_reserved_bytes") == large.ByteSize(),
        )
        assert final.value("logstream_request_gate_unreserved_bytes_total") == large.ByteSize()
        assert all(call.running() for call in others)
    finally:
        for sender in senders:
            sender.put(None)
        channel.close()
        monitored.proc.terminate()


def test_a_queue_fetch_passes_the_gate_and_its_long_poll_holds_only_its_request(
    tmp_path: Path,
) -> None:
    """Queue Fetch carries replies (record batches), so it reserves a whole message before
    gRPC reads it, like unary Produce; once decoded, a long-polling fetch holds its own
    size, not the reservation."""
    import queue

    import grpc

    from logstream.protocol import log_pb2, log_pb2_grpc, queue_pb2, queue_pb2_grpc

    mib = 1 << 20
    monitored = start_monitored(
        tmp_path / "data", max_message_bytes=mib, max_request_bytes_in_flight=mib
    )
    channel = grpc.insecure_channel(monitored.address)
    sender: queue.Queue[log_pb2.ProduceRequest | None] = queue.Queue()
    try:
        Admin(monitored.address).create_topic("jobs")
        queues = queue_pb2_grpc.QueueStub(channel)
        queues.Join(
            queue_pb2.QueueJoinRequest(
                group="workers", member_id="w1", topics=["jobs"], create=True
            ),
            timeout=30,
        )
        # an idle stream's first read takes the one place
        idle = log_pb2_grpc.LogStub(channel).ProduceStream(iter(sender.get, None), timeout=60)
        _wait_for(monitored, lambda s: s.value("logstream_request_gate_reserved_bytes") == mib)
        request = queue_pb2.QueueFetchRequest(group="workers", member_id="w1", max_wait_ms=20_000)
        fetch = queues.Fetch.future(request, timeout=60)
        waiting = _wait_for(
            monitored,
            lambda s: (
                s.value("logstream_request_gate_waits_total") == 1
                and s.value("logstream_request_gate_reserved_bytes") == request.ByteSize()
            ),
        )
        assert waiting.value("logstream_request_gate_waiters") == 0
        assert not fetch.done()  # long-polling the empty queue, holding its own bytes only
        fetch.cancel()
        _wait_for(monitored, lambda s: s.value("logstream_request_gate_reserved_bytes") == 0)
        assert idle.running()
    finally:
        sender.put(None)
        channel.close()
        monitored.proc.terminate()
