"""QueueConsumer prefetch against a real broker: a full poll makes the next fetch ask for
more (the member's share of the backlog the answer reports, or twice as many), the next
poll is served without a request, fetches keep growing up to
``PREFETCH_MAX_POLLS x max_records`` while the member keeps up and are not grown for a slow
handler, a prefetched record's lease (the one the broker granted, also after the group's
lease was lowered) is renewed when half of it ran out before it was handed out or the
broker restarted, and one the broker gave to another member meanwhile is left out."""

from __future__ import annotations

import time
from pathlib import Path

from queue_helpers import admin, make_topic

from logstream import Admin, Producer, QueueConsumer
from logstream.client.queue_consumer import QueueMessage
from logstream.client.queue_prefetch import PREFETCH_MAX_BYTES, PREFETCH_MAX_POLLS
from logstream.testing.broker import BrokerProcess


def _total(address: str, group: str) -> tuple[int, int]:
    """(acquired, acknowledged) of ``group`` as the broker reports them."""
    t = admin(address).describe_queue_group(group).total
    return t.acquired, t.acknowledged


def _poll_until(q: QueueConsumer, want: int, deadline_s: float = 10.0) -> list[QueueMessage]:
    end = time.monotonic() + deadline_s
    got: list[QueueMessage] = []
    while not got and time.monotonic() < end:
        got = q.poll(0.5, max_records=want)
    return got


def test_a_full_poll_prefetches_the_next_page_and_the_poll_after_makes_no_request(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 20)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=60_000)
    # acks wait for a request (no linger send), so the broker's counts show each request
    with QueueConsumer(qbroker.address, group=name, max_records=4, ack_linger_ms=60_000) as q:
        first = _poll_until(q, 4)
        assert len(first) == 4
        assert _total(qbroker.address, name) == (4, 0)  # the first fetch asks for 4 only
        for m in first:
            m.ack()
        second = q.poll(0.5)
        assert len(second) == 4
        # the first answer was full and said 16 more wait for its one member: the fetch
        # carried 4 acks and acquired those 16 at once: 4 handed out, 12 buffered
        assert _total(qbroker.address, name) == (16, 4)
        for m in second:
            m.ack()
        third = q.poll(0.5)
        assert [m.offset for m in third] == [8, 9, 10, 11]
        # served from the buffer: no request, so the broker saw neither a fetch nor acks
        assert _total(qbroker.address, name) == (16, 4)
        for m in third:
            m.ack()
        assert q.commit() == []
        assert _total(qbroker.address, name) == (8, 12)


def test_a_full_answer_sizes_the_next_fetch_to_the_members_share_of_the_backlog(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 40)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=60_000)
    kw = {"group": name, "max_records": 4, "ack_linger_ms": 60_000}
    with QueueConsumer(qbroker.address, **kw) as a, QueueConsumer(qbroker.address, **kw) as b:
        first = _poll_until(a, 4)
        assert len(first) == 4 and _total(qbroker.address, name) == (4, 0)
        for m in first:
            m.ack()
        a.poll(0.5)
        # 36 waited for 2 members: a's share, 18, rounded up to whole polls: 20 (not 8)
        assert _total(qbroker.address, name) == (20, 4)
        assert len(_poll_until(b, 4)) == 4  # b's first fetch asks for one poll's worth
        assert _total(qbroker.address, name) == (24, 4)


def test_without_prefetch_a_member_holds_exactly_what_it_polled(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 20)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=60_000)
    with QueueConsumer(qbroker.address, group=name, max_records=4, prefetch=False) as q:
        held: list[QueueMessage] = []
        for _ in range(3):
            got = _poll_until(q, 4)
            assert len(got) == 4
            held += got
            assert _total(qbroker.address, name) == (len(held), 0)


def test_fetches_grow_while_the_member_keeps_up_and_never_exceed_the_cap(
    qbroker: BrokerProcess, name: str
) -> None:
    cap = 5 * PREFETCH_MAX_POLLS
    # enough records for every doubling (5, 10, 20, ...) to reach the cap and then some
    records = 4 * cap
    make_topic(qbroker.address, name, 2, records)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=60_000)
    with QueueConsumer(qbroker.address, group=name, max_records=5) as q:
        seen: set[int] = set()
        most = 0
        while len(seen) < records:
            got = _poll_until(q, 5)
            assert got
            for m in got:
                seen.add(m.partition * 1000 + m.offset)
                m.ack()
            acquired, _ = _total(qbroker.address, name)
            assert acquired <= cap
            most = max(most, acquired)
        # 5, 10, 20, ... per fetch: the depth doubled up to its cap
        assert most == cap
        assert q.commit() == []


def test_prefetch_stops_growing_before_answers_pass_the_byte_bound(
    qbroker: BrokerProcess, name: str
) -> None:
    value = b"v" * (256 * 1024)  # 32 of them fill PREFETCH_MAX_BYTES
    with Admin(qbroker.address) as a:
        a.create_topic(name, partitions=1)
    with Producer(qbroker.address) as p:
        for _ in range(80):
            p.send(name, value=value, partition=0)
        p.flush()
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=60_000)
    with QueueConsumer(qbroker.address, group=name, max_records=2) as q:
        seen = 0
        most = 0
        while seen < 80:
            got = _poll_until(q, 2)
            assert got
            seen += len(got)
            for m in got:
                m.ack()
            most = max(most, _total(qbroker.address, name)[0])
        # 2, 4, 8, 16 records (4 MiB: half the bound), then no more growth: 16 held at most
        assert most * len(value) <= PREFETCH_MAX_BYTES
        assert most == 16
        assert q.commit() == []


def test_a_slow_handler_is_not_prefetched_for(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 1, 12)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=1_000)
    with QueueConsumer(qbroker.address, group=name, max_records=2) as q:
        for _ in range(4):
            got = _poll_until(q, 2)
            assert len(got) == 2
            # 2 records a 0.3 s: a quarter lease (250 ms) is worth less than one poll
            assert _total(qbroker.address, name)[0] == 2
            time.sleep(0.3)  # the handler's work
            for m in got:
                m.ack()


def test_a_lease_lowered_after_joining_is_the_one_prefetched_records_are_renewed_by(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 6)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=60_000)
    with QueueConsumer(qbroker.address, group=name, max_records=2) as q:
        for m in _poll_until(q, 2):
            m.ack()
        admin(qbroker.address).alter_queue_group(name, lease_ms=2_000)
        fetched_at = time.monotonic()
        for m in q.poll(0.5):  # fetches 4 under the 2 s lease: 2 handed out, 2 buffered
            m.ack()
        assert q.commit() == []
        while time.monotonic() - fetched_at < 1.2:  # more than half the new lease
            time.sleep(0.05)
        buffered = q.poll(0.5)
        assert len(buffered) == 2
        while time.monotonic() - fetched_at < 2.6:  # the fetch's lease ran out by now
            time.sleep(0.05)
        # renewed at hand-out although the lease at join time was 60 s
        d = admin(qbroker.address).describe_queue_group(name).total
        assert d.acquired == 2 and d.redelivered == 0
        with QueueConsumer(qbroker.address, group=name, max_records=20) as other:
            assert other.poll(0.3) == []
        for m in buffered:
            m.ack()
        assert q.commit() == []


LEASE_MS = 4_000
LEASE_S = LEASE_MS / 1000


def test_records_prefetched_half_a_lease_ago_get_a_fresh_lease_when_handed_out(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 6)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=LEASE_MS)
    with QueueConsumer(qbroker.address, group=name, max_records=2) as q:
        for m in _poll_until(q, 2):
            m.ack()
        fetched_at = time.monotonic()
        for m in q.poll(0.5):  # fetches 4: 2 now, 2 buffered under one lease
            m.ack()
        assert q.commit() == []
        while time.monotonic() - fetched_at < 0.6 * LEASE_S:  # more than half the lease
            time.sleep(0.05)
        buffered = q.poll(0.5)
        assert len(buffered) == 2
        while time.monotonic() - fetched_at < LEASE_S + 0.6:  # the fetch's lease ran out
            time.sleep(0.05)
        # renewed: still held by this member, not available to others (the renewed lease
        # runs ~0.6 lease longer: room for the second member to join and poll under load)
        d = admin(qbroker.address).describe_queue_group(name).total
        assert d.acquired == 2 and d.redelivered == 0
        with QueueConsumer(qbroker.address, group=name, max_records=20) as other:
            assert other.poll(0.3) == []
        for m in buffered:
            m.ack()
        assert q.commit() == []


def test_a_prefetched_record_another_member_took_over_is_left_out(
    qbroker: BrokerProcess, name: str
) -> None:
    make_topic(qbroker.address, name, 1, 6)
    admin(qbroker.address).create_queue_group(name, topics=[name], lease_ms=500)
    with QueueConsumer(qbroker.address, group=name, max_records=2) as q:
        for m in _poll_until(q, 2):
            m.ack()
        for m in q.poll(0.5):  # fetches the other 4: 2 handed out, 2 buffered
            m.ack()
        assert q.commit() == []
        with QueueConsumer(qbroker.address, group=name, max_records=10) as other:
            taken: list[QueueMessage] = []
            end = time.monotonic() + 10
            while len(taken) < 2 and time.monotonic() < end:  # the lease runs out: theirs
                taken += other.poll(0.5)
            assert len(taken) == 2 and {m.delivery_count for m in taken} == {2}
            assert sorted(m.offset for m in taken) == [4, 5]
            assert q.poll(0.0) == []  # refused renewal: not handed out
            for m in taken:
                m.ack()
            assert other.commit() == []


def test_no_ack_groups_are_not_prefetched(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 1, 20)
    admin(qbroker.address).create_queue_group(name, topics=[name], auto_ack=True)
    with QueueConsumer(qbroker.address, group=name, max_records=4) as q:
        polled = 0
        for _ in range(3):
            polled += len(_poll_until(q, 4))
            # a fetched record counts as finished: only what was handed out is
            assert _total(qbroker.address, name) == (0, polled)
        assert polled == 12


def test_records_prefetched_before_a_broker_restart_are_not_handed_out_after_it(
    tmp_path: Path,
) -> None:
    with BrokerProcess(tmp_path / "data", queue_tick_interval_ms=20) as broker:
        make_topic(broker.address, name := "restart-jobs", 1, 6)
        admin(broker.address).create_queue_group(name, topics=[name], lease_ms=60_000)
        with QueueConsumer(broker.address, group=name, max_records=2) as q:
            for m in _poll_until(q, 2):
                m.ack()
            for m in q.poll(0.5):  # fetches 2..5: 2, 3 handed out, 4, 5 buffered
                m.ack()
            assert q.commit() == []
            broker.restart(kill=True)  # every lease is void: 4 and 5 are anyone's now
            with QueueConsumer(broker.address, group=name, max_records=10) as other:
                taken: list[QueueMessage] = []
                end = time.monotonic() + 10
                while len(taken) < 2 and time.monotonic() < end:
                    taken += other.poll(0.5)
                assert sorted(m.offset for m in taken) == [4, 5]
                for m in taken:
                    m.ack()
                assert other.commit() == []
            # confirmed acks of another member: the buffered copies must not be handed out
            assert q.poll(0.0) == []
