"""QueueGroup: members, partitions, bad input, dead letters, group commit, describe."""

from __future__ import annotations

import numpy as np
import pytest

from logstream.coordinator.queues import (
    MemoryOutbox,
    MemoryStateLog,
    QueueGroup,
    QueueSettings,
    describe,
    recover_group,
)
from logstream.coordinator.queues import deadletter as dl
from logstream.coordinator.queues import statelog as sl
from logstream.errors import (
    InvalidConfigError,
    InvalidQueueDelayError,
    QueueRecordFinishedError,
    QueueRecordNotHeldError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from logstream.testing.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make(
    clock: ManualClock, partitions: int = 1, **settings: object
) -> tuple[QueueGroup, MemoryStateLog, MemoryOutbox]:
    log, outbox = MemoryStateLog(), MemoryOutbox()
    s = QueueSettings(**settings)  # type: ignore[arg-type]
    g = QueueGroup("jobs", s, clock=clock, state_log=log, outbox=outbox)
    for p in range(partitions):
        g.add_partition("t", p, 0)
        g.admit("t", p, 10, ts_ms=np.full(10, clock.now_ms()))
    g.join("a")
    g.join("b")
    return g, log, outbox


def restart(log: MemoryStateLog, clock: ManualClock, outbox: MemoryOutbox) -> QueueGroup:
    back = recover_group(
        "jobs", log.records(), clock=clock, state_log=MemoryStateLog(), outbox=outbox
    )
    assert back is not None
    return back


@pytest.mark.parametrize(
    "bad",
    [
        {"lease_ms": 0},
        {"max_deliveries": 0},
        {"backoff_initial_ms": -1},
        {"backoff_initial_ms": 10, "backoff_max_ms": 5},
        {"window_size": 0},
        {"start": "middle"},
        {"start": -5},
        {"expired_action": "ignore"},
    ],
)
def test_bad_settings_are_refused_with_a_named_code(bad: dict) -> None:
    with pytest.raises(InvalidConfigError):
        QueueSettings(**bad)


def test_default_settings_match_the_documented_defaults() -> None:
    s = QueueSettings()
    assert (s.lease_ms, s.max_deliveries, s.backoff_initial_ms, s.backoff_max_ms) == (
        30_000, 5, 1_000, 60_000,
    )  # fmt: skip
    assert (s.start, s.key_ordered, s.auto_ack, s.expired_action) == (
        "earliest", False, False, "dead-letter",
    )  # fmt: skip
    assert s.dead_letter_topic_for("jobs") == "jobs.dlq"


def test_settings_survive_the_state_log() -> None:
    s = QueueSettings(
        lease_ms=5, key_ordered=True, start=1234, dead_letter_topic="x", expired_action="drop"
    )
    assert sl.decode_settings(sl.encode_settings(s)) == s


def test_bad_requests_get_named_errors(clock: ManualClock) -> None:
    g, _, _ = make(clock)
    with pytest.raises(InvalidQueueDelayError):
        g.nack("a", "t", 0, [0], delay_ms=-1)
    with pytest.raises(InvalidQueueDelayError):
        g.acquire("a", 1, lease_ms=0)
    with pytest.raises(UnknownMemberIdError):
        g.acquire("nobody", 1)
    with pytest.raises(UnknownTopicOrPartitionError):
        g.ack("a", "other", 0, [0])
    assert InvalidQueueDelayError.code != QueueRecordNotHeldError.code


def test_acquire_spreads_over_partitions_and_reports_delivery_counts(clock: ManualClock) -> None:
    g, _, _ = make(clock, partitions=2)
    got = g.acquire("a", 15)
    assert sorted((d.partition, len(d.offsets)) for d in got) == [(0, 10), (1, 5)]
    assert all((d.delivery_counts == 1).all() for d in got)


def test_a_member_leaving_frees_its_records_at_once(clock: ManualClock) -> None:
    g, _, _ = make(clock)
    g.acquire("a", 4)
    assert g.leave("a") == 4
    got = g.acquire("b", 4)[0]
    assert got.offsets.tolist() == [0, 1, 2, 3]
    assert got.delivery_counts.tolist() == [2, 2, 2, 2]
    with pytest.raises(UnknownMemberIdError):
        g.ack("a", "t", 0, [0])


def test_reject_writes_the_dead_letter_with_its_headers_before_marking_dead(
    clock: ManualClock,
) -> None:
    g, log, outbox = make(clock)
    g.acquire("a", 1)
    assert g.reject("a", "t", 0, [0], reason="bad input").all_ok
    (letter,) = outbox.letters
    headers = dict(letter.headers())
    assert letter.dead_letter_topic == "jobs.dlq"
    assert headers[dl.HEADER_TOPIC] == b"t"
    assert headers[dl.HEADER_PARTITION] == b"0"
    assert headers[dl.HEADER_OFFSET] == b"0"
    assert headers[dl.HEADER_DELIVERIES] == b"1"
    assert headers[dl.HEADER_REASON] == b"rejected"
    assert headers[dl.HEADER_REASON_TEXT] == b"bad input"
    assert headers[dl.HEADER_TIME] == str(clock.now_ms()).encode()
    g.flush()
    assert sl.T_DEAD in sl.record_types(log.records())
    assert describe(g).total.dead_lettered == 1


def test_a_failed_dead_letter_write_leaves_the_record_pending_and_is_retried(
    clock: ManualClock,
) -> None:
    g, _, outbox = make(clock)
    g.acquire("a", 1)
    outbox.fail_next = True
    with pytest.raises(OSError):
        g.reject("a", "t", 0, [0])
    assert describe(g).total.dead_letter_pending == 0  # describe ticks: the retry went out
    assert [d.source_offset for d in outbox.letters] == [0]


def test_poison_record_is_dead_lettered_after_exactly_max_deliveries(clock: ManualClock) -> None:
    g, _, outbox = make(clock, max_deliveries=3, lease_ms=1_000)
    deliveries = 0
    for _ in range(10):
        got = [d for d in g.acquire("a", 1) if 0 in d.offsets]
        deliveries += len(got)
        if got:
            g.nack("a", "t", 0, [0], delay_ms=0)
            g.ack("a", "t", 0, [o for o in got[0].offsets if o != 0])
    assert deliveries == 3
    (letter,) = outbox.letters
    assert (letter.reason, letter.delivery_count) == ("max-deliveries", 3)


def test_many_operations_cost_one_append(clock: ManualClock) -> None:
    g, log, _ = make(clock)
    g.flush()
    before = log.appends
    got = g.acquire("a", 6)[0].offsets
    g.ack("a", "t", 0, got[:3])
    g.nack("a", "t", 0, got[3:5])
    g.reject("a", "t", 0, got[5:])
    assert g.flush() >= 4
    assert log.appends == before + 1
    assert g.flush() == 0


def test_describe_counts_depth_age_and_holdings(clock: ManualClock) -> None:
    g, _, _ = make(clock, partitions=2, backoff_initial_ms=5_000)
    got = g.acquire("a", 4)[0]
    g.ack("a", got.topic, got.partition, got.offsets[:1])
    g.nack("a", got.topic, got.partition, got.offsets[1:2])
    g.acquire("b", 1)
    clock.advance(7_000)
    d = describe(g, {("t", 0): 25, ("t", 1): 10})
    p0 = d.partitions[0]
    assert (p0.acquired, p0.delayed, p0.acknowledged, p0.unread) == (2, 0, 1, 15)
    assert p0.available == 7  # the nacked record came due after 5 s
    assert d.total.acquired == 3
    assert d.members == {"a": 2, "b": 1}
    assert d.total.oldest_unfinished_age_ms == 7_000
    assert d.total.depth == (7 + 9) + 15 + 3  # available p0 + p1, unread p0, in flight


def test_configure_applies_at_once_and_is_persisted(clock: ManualClock) -> None:
    g, log, outbox = make(clock)
    g.configure(max_deliveries=1, window_size=4)
    with pytest.raises(InvalidConfigError):
        g.configure(lease_ms=-3)
    g.acquire("a", 1)
    g.nack("a", "t", 0, [0])
    assert [d.reason for d in outbox.letters] == ["max-deliveries"]
    g.flush()
    back = restart(log, clock, outbox)
    assert back is not None
    assert back.settings.max_deliveries == 1
    assert back.window("t", 0).capacity == 10  # never shrinks below what it holds


def test_delivery_counts_and_nack_delays_survive_a_restart(clock: ManualClock) -> None:
    g, log, outbox = make(clock, backoff_initial_ms=60_000, backoff_max_ms=60_000)
    g.acquire("a", 3)
    g.ack("a", "t", 0, [0])
    g.nack("a", "t", 0, [1])
    g.flush()
    back = restart(log, clock, outbox)
    assert back is not None
    back.join("c")
    got = back.acquire("c", 3)[0]
    assert got.offsets.tolist() == [2, 3, 4]  # 1 waits out its backoff, 0 stays acked
    assert got.delivery_counts.tolist() == [2, 1, 1]
    clock.advance(60_000)
    assert back.acquire("c", 1)[0].offsets.tolist() == [1]


def test_expired_records_are_dead_lettered_after_a_restart_too(clock: ManualClock) -> None:
    log, outbox = MemoryStateLog(), MemoryOutbox()
    g = QueueGroup("jobs", QueueSettings(), clock=clock, state_log=log, outbox=outbox)
    g.add_partition("t", 0, 0)
    g.admit("t", 0, 2, expires_at_ms=np.array([clock.now_ms() + 100, 0]))
    g.flush()
    clock.advance(100)
    back = restart(log, clock, outbox)
    assert back is not None
    back.tick()
    assert [(d.source_offset, d.reason) for d in outbox.letters] == [(0, "expired")]


def test_a_crash_after_the_dead_letter_write_keeps_one_copy_and_its_reason(
    clock: ManualClock,
) -> None:
    log, outbox = MemoryStateLog(), MemoryOutbox()
    g = QueueGroup("jobs", QueueSettings(), clock=clock, state_log=log, outbox=outbox)
    g.add_partition("t", 0, 0)
    g.admit("t", 0, 3, expires_at_ms=np.array([0, clock.now_ms() + 10, 0]))
    g.join("a")
    g.acquire("a", 1)
    g.flush()
    g.reject("a", "t", 0, [0])
    clock.advance(10)
    g.tick()  # 1 expires
    assert [d.source_offset for d in outbox.letters] == [0, 1]
    # crash: the DEAD records were never flushed
    after = MemoryStateLog()
    back = recover_group("jobs", log.records(), clock=clock, state_log=after, outbox=outbox)
    assert back is not None
    assert len(outbox.letters) == 2  # no second copy
    d = describe(back)
    assert (d.total.dead_lettered, d.total.available) == (2, 1)
    reasons = [sl.decode_change(r)[3] for r in after.records() if r[0] == sl.T_DEAD]
    assert sorted(reasons) == [1, 3]  # rejected, expired


def test_retention_below_the_window_skips_to_the_log_start_and_counts_lost(
    clock: ManualClock,
) -> None:
    g, log, outbox = make(clock, window_size=10)  # offsets 0-9 admitted
    held = g.acquire("a", 2)[0].offsets.tolist()  # 0, 1 held by a
    assert held == [0, 1]
    g.nack("a", "t", 0, [1], delay_ms=5_000)  # 1 waits out a delay
    # retention deleted offsets below 6: 2-5 waiting in the window and the delayed 1 are
    # lost; 0 stays with its holder (it has the record already)
    assert g.skip_to("t", 0, 6) == 5
    assert g.acquire("b", 10)[0].offsets.tolist() == [6, 7, 8, 9]
    assert g.ack("a", "t", 0, [0]).failures() == []
    # the log start passes the window's end: the records never read count as lost
    g.ack("b", "t", 0, [6, 7, 8, 9])
    assert g.skip_to("t", 0, 25) == 15
    assert g.room("t", 0) == (25, 10)
    d = describe(g)
    assert d.partitions[0].lost_to_retention == d.total.lost_to_retention == 20
    g.flush()
    back = restart(log, clock, outbox)
    assert back.window("t", 0).lost_total == 20
    assert back.room("t", 0) == (25, 10)


def test_a_window_jump_keeps_held_records_addressable(clock: ManualClock) -> None:
    g, _, _ = make(clock, window_size=10)
    assert g.acquire("a", 3)[0].offsets.tolist() == [0, 1, 2]
    assert g.skip_to("t", 0, 50) == 50 - 3  # 3-9 in the window and 10-49 never read
    assert g.ack("a", "t", 0, [0, 2]).failures() == []
    g.nack("a", "t", 0, [1], delay_ms=0)  # back to available (its record is gone, though)
    assert g.skip_to("t", 0, 50) == 1  # the next admit finishes it as lost


def test_acquired_records_whose_data_is_gone_are_finished_as_lost(clock: ManualClock) -> None:
    g, log, outbox = make(clock, window_size=10)
    assert g.acquire("a", 4)[0].offsets.tolist() == [0, 1, 2, 3]
    # the broker found 0 and 1 deleted when it read them for the fetch
    assert g.skip_to("t", 0, 2, np.array([0, 1], np.int64)) == 2
    assert g.ack("a", "t", 0, [0, 2, 3]).failures() == [(0, QueueRecordFinishedError.code)]
    g.flush()
    assert restart(log, clock, outbox).window("t", 0).lost_total == 2


def test_a_topic_created_again_is_not_taken_for_its_old_dead_letters_after_a_restart(
    clock: ManualClock,
) -> None:
    # Decision 0048: a deleted topic's partitions start over at 0. Recovery's "already in
    # the dead-letter topic?" matched by (group, topic, partition, offset) only, so after a
    # restart the new topic's waiting records at the offsets the old one had dead-lettered
    # were marked dead, with no copy written: never delivered (here 0 and 1 of 3).
    g, log, outbox = make(clock)
    g.acquire("a", 2)
    assert g.reject("a", "t", 0, [0, 1]).all_ok
    g.flush()
    g.restart_partition("t", 0, 0)  # the topic was deleted (and is created again)
    g.admit("t", 0, 3, ts_ms=np.full(3, clock.now_ms()))
    g.flush()
    back = restart(log, clock, outbox)
    assert [d.source_offset for d in outbox.letters] == [0, 1]  # the old topic's
    assert (describe(back).total.available, describe(back).total.dead_lettered) == (3, 0)
    back.join("a")
    assert [o for d in back.acquire("a", 5) for o in d.offsets.tolist()] == [0, 1, 2]
    # The new topic's own letter is still recognised: a crash between it and its DEAD
    # record leaves one copy, not two.
    clock.advance(1)
    assert back.reject("a", "t", 0, [1]).all_ok  # written; DEAD never flushed (crash)
    again = recover_group(
        "jobs", log.records(), clock=clock, state_log=MemoryStateLog(), outbox=outbox
    )
    assert again is not None
    assert [d.source_offset for d in outbox.letters] == [0, 1, 1]
    assert describe(again).total.dead_lettered == 1


def test_a_checkpoint_keeps_when_a_partition_started_over(clock: ManualClock) -> None:
    g, log, outbox = make(clock)
    g.acquire("a", 1)
    assert g.reject("a", "t", 0, [0]).all_ok
    g.restart_partition("t", 0, 0)
    g.admit("t", 0, 2, ts_ms=np.full(2, clock.now_ms()))
    g.checkpoint()  # replay starts at it: the PARTITION record in it must keep the time
    back = restart(log, clock, outbox)
    assert (describe(back).total.available, describe(back).total.dead_lettered) == (2, 0)
    assert sl.partition_since(sl.encode_partition(0, "t", 0, 0)) == 0  # the first start
    assert sl.decode_partition(sl.encode_partition(3, "t", 1, 7, 99)) == (3, "t", 1, 7)
