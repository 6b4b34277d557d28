"""Queue groups over the wire, against a real broker process: settle outcomes, nack
timing, release on close, dead letters and redrive, key order, bad input."""

from __future__ import annotations

import time

import pytest
from queue_helpers import admin, make_topic

from logstream import Consumer, QueueConsumer, errors
from logstream.protocol import queue_pb2
from logstream.testing.broker import BrokerProcess


def drain(q: QueueConsumer, want: int, deadline_s: float = 10.0) -> list:
    got: list = []
    end = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < end:
        got += q.poll(0.5)
    return got


def test_nacked_record_returns_after_its_backoff_while_others_flow(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 200)
    admin(qbroker.address).create_queue_group(name, topics=[name], backoff_initial_ms=1_500)
    with QueueConsumer(qbroker.address, group=name, max_records=10) as q:
        first = drain(q, 1)
        nacked = first[0]
        assert nacked.delivery_count == 1
        nacked.nack()
        for m in first[1:]:
            m.ack()
        assert q.commit() == []
        nacked_at = time.monotonic()
        acked = len(first) - 1
        back = None
        while back is None and time.monotonic() - nacked_at < 5:
            for m in q.poll(0.2):
                if m.offset == nacked.offset:
                    back, back_at = m, time.monotonic()
                else:
                    acked += 1
                m.ack()
        assert back is not None, "the nacked record never came back"
        assert back.delivery_count == 2
        assert 1.5 - 0.05 <= back_at - nacked_at <= 1.5 + 1.0
        assert acked == 199, "the records behind the nacked one kept flowing"
        assert q.commit() == []


def test_close_releases_at_once_and_a_late_ack_is_refused(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 20)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=60_000)
    a = QueueConsumer(qbroker.address, group=name, max_records=20)
    held = drain(a, 20)
    assert len(held) == 20
    a.close()
    with QueueConsumer(qbroker.address, group=name, max_records=20) as b:
        started = time.monotonic()
        again = drain(b, 20, deadline_s=5)
        assert time.monotonic() - started < 2.0  # not the 60 s lease
        assert sorted(m.offset for m in again) == sorted(m.offset for m in held)
        assert {m.delivery_count for m in again} == {2}
        # a record b holds, acked by another member: refused with a named code
        with QueueConsumer(qbroker.address, group=name) as c:
            c._queue_settle(again[0], queue_pb2.SETTLE_ACK)
            refused = c.commit()
        assert [r.error.name for r in refused] == ["QUEUE_RECORD_NOT_HELD"]
        for m in again:
            m.ack()
        assert b.commit() == []
        assert admin(qbroker.address).describe_queue_group(name).total.acknowledged == 20


def test_poison_record_dead_lettered_after_max_deliveries_then_redriven(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 3)
    ga = admin(qbroker.address)
    ga.create_queue_group(name, topics=[name], max_deliveries=3, backoff_initial_ms=10)
    deliveries: dict[int, list[int]] = {}
    with QueueConsumer(qbroker.address, group=name, max_records=10) as q:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            d = ga.describe_queue_group(name).total
            if d.dead_lettered == 3:
                break
            for m in q.poll(0.2):
                deliveries.setdefault(m.offset, []).append(m.delivery_count)
                if m.offset == 1:
                    m.reject(reason="bad input")
                else:
                    m.nack(reason="still failing")
            q.commit()
    assert deliveries[0] == [1, 2, 3] and deliveries[2] == [1, 2, 3]
    assert deliveries[1] == [1]  # reject is immediate
    with Consumer(qbroker.address, auto_offset_reset="earliest") as c:
        c.assign([(f"{name}.dlq", 0)])
        letters = []
        end = time.monotonic() + 5
        while len(letters) < 3 and time.monotonic() < end:
            letters += c.poll(0.5)
    by_offset = {int(dict(r.headers)["logstream.dlq.source-offset"]): r for r in letters}
    h = dict(by_offset[0].headers)
    assert by_offset[0].value == b"task-0"
    assert h["logstream.dlq.reason"] == b"max-deliveries"
    assert h["logstream.dlq.delivery-count"] == b"3"
    assert h["logstream.dlq.reason-text"] == b"still failing"
    assert h["logstream.dlq.source-topic"] == name.encode()
    assert dict(by_offset[1].headers)["logstream.dlq.reason"] == b"rejected"

    dry = ga.redrive(name, reasons=["rejected"])
    assert [i.source_offset for i in dry] == [1]
    assert ga.redrive(name, reasons=["rejected"]) == dry  # a dry run changes nothing
    assert ga.describe_queue_group(name).total.depth == 0
    moved = ga.redrive(name, execute=True)
    assert sorted(i.source_offset for i in moved) == [0, 1, 2]
    assert ga.redrive(name, execute=True) == []  # each letter goes back once
    with QueueConsumer(qbroker.address, group=name) as q:
        back = drain(q, 3)
        assert sorted(m.value for m in back) == [b"task-0", b"task-1", b"task-2"]
        for m in back:
            m.ack()
        assert q.commit() == []


def test_key_ordered_group_keeps_order_per_key_and_a_nack_holds_only_its_key(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 60, keys=3)
    admin(qbroker.address).create_queue_group(
        name, topics=[name], key_ordered=True, backoff_initial_ms=300
    )
    a = QueueConsumer(qbroker.address, group=name, max_records=10)
    b = QueueConsumer(qbroker.address, group=name, max_records=10)
    seen: dict[bytes, list[int]] = {}
    nacked = False
    try:
        end = time.monotonic() + 10
        done = 0
        while done < 60 and time.monotonic() < end:
            batch_a, batch_b = a.poll(0.1), b.poll(0.1)
            keys_a = [m.key for m in batch_a]
            keys_b = [m.key for m in batch_b]
            assert not set(keys_a) & set(keys_b), "one key in flight at two members"
            assert len(keys_a) == len(set(keys_a)) and len(keys_b) == len(set(keys_b))
            for m in batch_a + batch_b:
                if m.key == b"k0" and not nacked:
                    nacked = True
                    m.nack()
                    continue
                seen.setdefault(m.key, []).append(m.offset)
                m.ack()
                done += 1
    finally:
        a.close()
        b.close()
    assert done == 60
    for offsets in seen.values():
        assert offsets == sorted(offsets)


def test_bad_input_gets_named_codes(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 1, 5)
    ga = admin(qbroker.address)
    with pytest.raises(errors.GroupIdNotFoundError):
        ga.describe_queue_group(f"{name}-missing")
    with pytest.raises(errors.GroupIdNotFoundError):
        QueueConsumer(qbroker.address, group=f"{name}-nope", create=False)
    with pytest.raises(errors.InvalidConfigError):
        ga.create_queue_group(name, topics=[name], lease_ms=-5)
    with pytest.raises(errors.InvalidConfigError):
        ga.create_queue_group(name, topics=[name], colour="blue")
    with pytest.raises(errors.UnknownTopicOrPartitionError):
        ga.create_queue_group(name, topics=[f"{name}-no-topic"])
    ga.create_queue_group(name, topics=[name])
    with QueueConsumer(qbroker.address, group=name) as q:
        m = drain(q, 1)[0]
        with pytest.raises(errors.InvalidQueueDelayError):
            m.nack(delay_ms=-1)
        settle = queue_pb2.Settlement(
            topic=name, partition=0, kind=queue_pb2.SETTLE_NACK, offsets=[m.offset], delay_ms=-1
        )
        with pytest.raises(errors.InvalidQueueDelayError):
            q._transport.queue_settle(
                queue_pb2.QueueSettleRequest(group=name, member_id=q.member_id, settle=[settle]),
                timeout=5,
            )
        m2 = queue_pb2.Settlement(
            topic=name, partition=0, kind=queue_pb2.SETTLE_ACK, offsets=[10_000, m.offset, m.offset]
        )
        resp = q._transport.queue_settle(
            queue_pb2.QueueSettleRequest(group=name, member_id=q.member_id, settle=[m2]),
            timeout=5,
        )
        codes = dict(zip(resp.results[0].offsets, resp.results[0].error_codes, strict=True))
        assert codes == {
            10_000: errors.QueueOffsetNotInWindowError.code,
            m.offset: errors.InvalidRequestError.code,
        }
    # kind mismatch, both ways
    cg = f"{name}-cg"
    with Consumer(qbroker.address, group=cg) as c:
        c.subscribe([name])
        end = time.monotonic() + 5
        while not c.assignment() and time.monotonic() < end:
            c.poll(0.2)
        with pytest.raises(errors.GroupKindMismatchError):
            ga.create_queue_group(cg, topics=[name])
        with pytest.raises(errors.GroupKindMismatchError):
            QueueConsumer(qbroker.address, group=cg, topics=[name])
    # a Consumer using a queue group's name: its first poll raises the broker's refusal
    # (the heartbeat thread stops; later polls raise it again)
    with Consumer(qbroker.address, group=name) as c:
        c.subscribe([name])
        started = time.monotonic()
        with pytest.raises(errors.GroupKindMismatchError):
            c.poll(10.0)
        assert time.monotonic() - started < 5.0, "raised when the answer came, not at timeout"
        with pytest.raises(errors.GroupKindMismatchError):
            c.poll(0.0)


def test_records_cut_out_of_a_shared_batch_keep_key_value_headers_and_time(
    qbroker: BrokerProcess, name: str
) -> None:
    from logstream import Admin, Producer

    with Admin(qbroker.address) as a:
        a.create_topic(name, partitions=1)
    with Producer(qbroker.address) as p:
        for i in range(10):
            p.send(
                name,
                value=f"v{i}".encode(),
                key=f"k{i}".encode(),
                headers=[("n", str(i).encode()), ("t", b"x")],
                timestamp_ms=1_000 + i,
            )
        p.flush()
    admin(qbroker.address).create_queue_group(name, topics=[name])
    with QueueConsumer(qbroker.address, group=name, max_records=3) as q:
        first = q.poll(5.0)
        assert [m.offset for m in first] == [0, 1, 2]
        for m in first:
            m.nack(delay_ms=0) if m.offset == 1 else m.ack()
        got = {m.offset: m for m in first}
        for m in drain(q, 8):
            got[m.offset] = m
            m.ack()
        assert q.commit() == []
    for i in range(10):
        m = got[i]
        assert (m.key, m.value, m.timestamp_ms) == (f"k{i}".encode(), f"v{i}".encode(), 1000 + i)
        assert m.headers == (("n", str(i).encode()), ("t", b"x"))


def test_offsets_travel_as_runs_when_asked_and_bad_runs_get_a_named_code(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 30)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=60_000)
    with QueueConsumer(qbroker.address, group=name, prefetch=False) as q:
        assert q._runs, "the broker says it takes and gives offset runs"
        fetch = q._transport.queue_fetch

        def raw(n: int, runs: bool) -> queue_pb2.QueueRecords:
            resp = fetch(
                queue_pb2.QueueFetchRequest(
                    group=name, member_id=q.member_id, max_records=n, offset_runs=runs
                ),
                timeout=5,
            )
            return resp.records[0]

        lists = raw(10, runs=False)  # an older client's answer
        assert list(lists.offsets) == list(range(10)) and list(lists.delivery_counts) == [1] * 10
        assert not lists.offset_runs and not lists.delivery_count_runs
        runs = raw(10, runs=True)
        assert list(runs.offset_runs) == [10, 10] and list(runs.delivery_count_runs) == [1, 10]
        assert not runs.offsets and not runs.delivery_counts

        def settle(s: queue_pb2.Settlement) -> queue_pb2.QueueSettleResponse:
            return q._transport.queue_settle(
                queue_pb2.QueueSettleRequest(group=name, member_id=q.member_id, settle=[s]),
                timeout=5,
            )

        ack = queue_pb2.SETTLE_ACK
        bad_runs = (
            [10, 5, 15],
            [10, -1],
            [-3, 2],
            [10, (1 << 16) + 1],
            [10, 1 << 15, 0, (1 << 15) + 1],
            [0, 1 << 62] * 4,  # counts whose int64 sum wraps to 0
            [0, (1 << 63) - 1, 0, 2],
            [(1 << 63) - 1, 5, 0, 1],  # offsets past int64
        )
        for bad in bad_runs:
            with pytest.raises(errors.InvalidRequestError, match="offset_runs"):
                settle(queue_pb2.Settlement(topic=name, partition=0, kind=ack, offset_runs=bad))
        # each settlement within its bound, together more than a request may cover: a few
        # bytes must not make the broker build arrays of any size
        many = [
            queue_pb2.Settlement(topic=name, partition=0, kind=ack, offset_runs=[0, 1 << 16])
        ] * 17
        with pytest.raises(errors.InvalidRequestError, match="one request"):
            q._transport.queue_settle(
                queue_pb2.QueueSettleRequest(group=name, member_id=q.member_id, settle=many),
                timeout=5,
            )
        assert admin(qbroker.address).describe_queue_group(name).total.acknowledged == 0
        # offsets and runs together: 0..9 one by one, 10..14 and 16..19 as runs
        both = queue_pb2.Settlement(
            topic=name, partition=0, kind=ack, offsets=range(10), offset_runs=[10, 5, 16, 4]
        )
        assert not settle(both).results
        t = admin(qbroker.address).describe_queue_group(name).total
        assert (t.acknowledged, t.acquired) == (19, 1)
        # the client's own path: a fetch answered with runs, acks sent as runs
        page = drain(q, 10)
        assert [m.offset for m in page] == list(range(20, 30))
        assert isinstance(page[0]._records.offsets, range)
        for m in page:
            m.ack()
        settles, sent = q._take_pending()
        assert [list(s.offset_runs) for s in settles] == [[20, 10]] and not settles[0].offsets
        q._restore(sent)
        assert q.commit() == []
        t = admin(qbroker.address).describe_queue_group(name).total
        assert (t.acknowledged, t.acquired) == (29, 1)


def test_a_redriven_record_is_as_old_as_its_redrive_not_its_first_produce(
    qbroker: BrokerProcess, name: str
) -> None:
    # The oldest-age alert is "work waiting this long": a record an operator just put back
    # must not fire it at once for the hour it spent before it was dead-lettered. The copy
    # is stamped when it is appended, and message_ttl_ms counts from there too.
    from logstream import Producer
    from logstream.testing.wait import wait_for

    make_topic(qbroker.address, name, 1, 0)
    ga = admin(qbroker.address)
    ga.create_queue_group(name, topics=[name])
    hour_ago = int(time.time() * 1000) - 3_600_000
    with Producer(qbroker.address) as p:
        p.send(name, b"old-job", timestamp_ms=hour_ago).result(10)
    assert ga.describe_queue_group(name).total.oldest_unfinished_age_ms >= 3_600_000
    with QueueConsumer(qbroker.address, group=name) as q:
        (job,) = drain(q, 1)
        job.reject(reason="bad input")
        assert q.commit() == []
    wait_for(lambda: ga.describe_queue_group(name).total.dead_lettered == 1, 10, "dead letter")
    redriven_at = int(time.time() * 1000)
    assert [i.source_offset for i in ga.redrive(name, execute=True)] == [0]
    total = ga.describe_queue_group(name).total
    assert total.depth == 1
    assert 0 <= total.oldest_unfinished_age_ms < int(time.time() * 1000) - redriven_at + 5_000
    with QueueConsumer(qbroker.address, group=name) as q:
        (back,) = drain(q, 1)
        assert back.value == b"old-job" and back.offset == 1
        assert redriven_at - 1_000 <= back.timestamp_ms <= int(time.time() * 1000)
        back.ack()
        assert q.commit() == []
