"""The data plane over real gRPC: produce, fetch, long-poll, subscribe, offsets, producer ids."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from logstream.codec import encode_batch, iter_batches
from logstream.protocol import common_pb2, log_pb2


def values(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(n)]


def test_produce_fetch_round_trip_over_many_partitions(client, topic):
    assert client.create_topic(topic, partitions=4).error_code == 0
    for p in range(4):
        res = client.produce(
            topic, p, encode_batch(values(f"p{p}a", 3)), encode_batch(values(f"p{p}b", 2))
        )
        assert res.error_code == 0
        assert [r.base_offset for r in res.results] == [0, 3]
        assert all(r.error_code == 0 for r in res.results)
    resp = client.log.Fetch(
        log_pb2.FetchRequest(
            partitions=[
                log_pb2.FetchPartition(topic=topic, partition=p, offset=0) for p in range(4)
            ]
        )
    )
    assert [p.partition for p in resp.partitions] == [0, 1, 2, 3]
    for p, part in enumerate(resp.partitions):
        assert part.error_code == 0 and part.high_watermark == 5 and part.log_start_offset == 0
        got = [v for b in iter_batches(part.records) for v in b.value_list()]
        assert got == values(f"p{p}a", 3) + values(f"p{p}b", 2)
        assert [b.header.base_offset for b in iter_batches(part.records)] == [0, 3]


def test_fetch_at_end_is_empty_and_mid_batch_returns_the_whole_batch(client, topic):
    client.create_topic(topic)
    client.produce(topic, 0, encode_batch(values("x", 10)))
    at_end = client.fetch(topic, 0, 10)
    assert at_end.error_code == 0 and at_end.records == b"" and at_end.high_watermark == 10
    mid = client.fetch(topic, 0, 4)
    assert [b.header.base_offset for b in iter_batches(mid.records)] == [0]


def test_fetch_respects_max_bytes_but_returns_at_least_one_batch(client, topic):
    client.create_topic(topic, partitions=2)
    big = [encode_batch([b"v" * 1000]) for _ in range(5)]
    for p in range(2):
        client.produce(topic, p, *big)
    one = client.fetch(topic, 0, 0, max_bytes=10)
    assert len(list(iter_batches(one.records))) == 1
    two = client.fetch(topic, 0, 0, max_bytes=2 * len(big[0]))
    assert len(list(iter_batches(two.records))) == 2
    # The request-wide budget is spent by partition 0; partition 1 answers offsets only.
    resp = client.log.Fetch(
        log_pb2.FetchRequest(
            max_bytes=3 * len(big[0]),
            partitions=[log_pb2.FetchPartition(topic=topic, partition=p) for p in range(2)],
        )
    )
    assert len(list(iter_batches(resp.partitions[0].records))) == 3
    assert resp.partitions[1].records == b"" and resp.partitions[1].high_watermark == 5


@pytest.mark.serial  # timing-sensitive: run alone by `make test` (docs/decisions/0040)
def test_long_poll_wakes_within_100ms_of_a_produce(client, topic):
    client.create_topic(topic)
    result: dict[str, float] = {}

    def fetcher() -> None:
        start = time.monotonic()
        resp = client.fetch(topic, 0, 0, max_wait_ms=5000, min_bytes=1)
        result["done"] = time.monotonic()
        result["elapsed"] = result["done"] - start
        result["bytes"] = len(resp.records)

    t = threading.Thread(target=fetcher)
    t.start()
    time.sleep(0.3)  # let the fetch start waiting
    produced_at = time.monotonic()
    client.produce(topic, 0, encode_batch([b"wake up"]))
    t.join(10)
    assert result["bytes"] > 0
    assert result["done"] - produced_at < 0.1, result
    assert result["elapsed"] < 1.0


@pytest.mark.serial  # timing-sensitive: run alone by `make test` (docs/decisions/0040)
def test_long_poll_times_out_empty_after_max_wait(client, topic):
    client.create_topic(topic)
    start = time.monotonic()
    resp = client.fetch(topic, 0, 0, max_wait_ms=300)
    elapsed = time.monotonic() - start
    assert resp.error_code == 0 and resp.records == b""
    assert 0.25 < elapsed < 2.0


def test_long_poll_waits_for_min_bytes(client, topic):
    client.create_topic(topic)
    batch = encode_batch([b"x" * 100])
    client.produce(topic, 0, batch)
    start = time.monotonic()
    timer = threading.Timer(0.3, lambda: client.produce(topic, 0, batch))
    timer.start()
    resp = client.fetch(topic, 0, 0, max_wait_ms=5000, min_bytes=len(batch) + 1)
    timer.join()
    assert len(list(iter_batches(resp.records))) == 2
    assert 0.25 < time.monotonic() - start < 2.0


def test_subscribe_pushes_new_data_until_cancelled(client, topic):
    client.create_topic(topic)
    client.produce(topic, 0, encode_batch([b"before"]))
    stream = client.log.Subscribe(
        log_pb2.SubscribeRequest(partitions=[log_pb2.FetchPartition(topic=topic, offset=0)]),
        timeout=20,
    )
    seen: list[bytes] = []
    first = next(stream)
    seen += [v for b in iter_batches(first.partitions[0].records) for v in b.value_list()]
    for i in range(3):
        client.produce(topic, 0, encode_batch([f"live-{i}".encode()]))
        msg = next(stream)
        seen += [v for b in iter_batches(msg.partitions[0].records) for v in b.value_list()]
    stream.cancel()
    assert seen == [b"before", b"live-0", b"live-1", b"live-2"]


def test_produce_stream_answers_in_order_with_correlation_ids(client, topic):
    client.create_topic(topic)
    requests = [
        log_pb2.ProduceRequest(
            correlation_id=100 + i,
            partitions=[
                log_pb2.PartitionProduceData(topic=topic, batches=[encode_batch([b"%d" % i])])
            ],
        )
        for i in range(5)
    ]
    answers = list(client.log.ProduceStream(iter(requests), timeout=10))
    assert [a.correlation_id for a in answers] == [100, 101, 102, 103, 104]
    assert [a.partitions[0].results[0].base_offset for a in answers] == [0, 1, 2, 3, 4]


def test_list_offsets_earliest_latest_and_by_timestamp(client, topic):
    client.create_topic(topic)
    client.produce(topic, 0, encode_batch(values("a", 3), timestamps=[1000, 1001, 1002]))
    client.produce(topic, 0, encode_batch(values("b", 2), timestamps=[5000, 5001]))

    def lookup(ts: int) -> log_pb2.ListOffsetsPartitionResponse:
        req = log_pb2.ListOffsetsRequest(
            partitions=[log_pb2.ListOffsetsPartition(topic=topic, partition=0, timestamp=ts)]
        )
        return client.log.ListOffsets(req).partitions[0]

    def found(ts: int) -> tuple[int, int]:
        r = lookup(ts)
        return r.offset, r.timestamp

    assert found(-2) == (0, -1)
    assert found(-1) == (5, -1)
    assert found(0) == (0, 1000)  # the offset and the timestamp of the record found
    assert found(1001) == (1, 1001)
    assert found(3000) == (3, 5000)  # first record with timestamp >= 3000
    assert found(5001) == (4, 5001)  # the exact record, not its batch
    assert found(9999) == (5, -1)  # none: the log end
    assert all(lookup(ts).error_code == 0 for ts in (-2, -1, 0, 9999))


def test_init_producer_id_hands_out_fresh_ids_and_bumps_named_epochs(client):
    a = client.log.InitProducerId(log_pb2.InitProducerIdRequest())
    b = client.log.InitProducerId(log_pb2.InitProducerIdRequest())
    assert a.producer_id != b.producer_id and a.producer_epoch == b.producer_epoch == 0
    name = f"writer-{a.producer_id}"
    n1 = client.log.InitProducerId(log_pb2.InitProducerIdRequest(producer_name=name))
    n2 = client.log.InitProducerId(log_pb2.InitProducerIdRequest(producer_name=name))
    assert n1.producer_id == n2.producer_id and n2.producer_epoch == n1.producer_epoch + 1


def test_idempotent_retry_is_a_duplicate_with_the_original_offsets(client, topic):
    client.create_topic(topic)
    pid = client.log.InitProducerId(log_pb2.InitProducerIdRequest())
    batch = encode_batch(
        values("i", 3),
        producer_id=pid.producer_id,
        producer_epoch=pid.producer_epoch,
        base_sequence=0,
    )
    first = client.produce(topic, 0, batch).results[0]
    again = client.produce(topic, 0, batch).results[0]
    assert first.error_code == again.error_code == 0
    assert again.duplicate and again.base_offset == first.base_offset == 0
    assert [v for _, v in client.read_all(topic)] == values("i", 3)


def test_acks_none_and_flushed_are_acknowledged(client, topic):
    client.create_topic(topic)
    none = client.produce(topic, 0, encode_batch([b"n"]), acks=common_pb2.ACKS_NONE)
    flushed = client.produce(topic, 0, encode_batch([b"f"]), acks=common_pb2.ACKS_FLUSHED)
    default = client.produce(topic, 0, encode_batch([b"d"]), acks=common_pb2.ACKS_UNSPECIFIED)
    assert [r.results[0].base_offset for r in (none, flushed, default)] == [0, 1, 2]
    assert all(r.results[0].error_code == 0 for r in (none, flushed, default))


def test_health_check_reports_serving(client):
    stub = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "logstream.v1.Log", "logstream.v1.Admin"):
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(client):
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"logstream.v1.Log", "logstream.v1.Admin", "grpc.health.v1.Health"} <= names


def test_group_service_is_not_served_yet(client):
    from logstream.protocol import group_pb2, group_pb2_grpc

    stub = group_pb2_grpc.GroupStub(client.channel)
    try:
        stub.ListGroups(group_pb2.ListGroupsRequest(), timeout=5)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.UNIMPLEMENTED
    else:  # the coordinator has been plugged in
        pass


def test_log_append_time_topic_answers_the_append_time(client, topic):
    client.create_topic(topic, timestamp_type="log_append")
    before = time.time() * 1000
    res = client.produce(topic, 0, encode_batch([b"x"], timestamps=[1]))
    assert before - 1000 <= res.results[0].log_append_time_ms <= time.time() * 1000 + 1000
    create_time = client.create_topic(topic + "-c")
    assert create_time.error_code == 0
    assert client.produce(topic + "-c", 0, encode_batch([b"x"])).results[0].log_append_time_ms == -1
