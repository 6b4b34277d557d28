"""One behaviour per test for the partition window's rules."""

from __future__ import annotations

import numpy as np

from logstream.coordinator.queues import views
from logstream.coordinator.queues.columns import (
    ACKED,
    AVAILABLE,
    DEAD_PENDING,
    DELAYED,
    DROPPED,
    REASON_EXPIRED,
    REASON_MAX_DELIVERIES,
    REASON_REJECTED,
)
from logstream.coordinator.queues.results import (
    FINISHED,
    NOT_HELD,
    NOT_IN_WINDOW,
    OK,
    REPEATED,
    to_ranges,
)
from logstream.coordinator.queues.settings import Backoff
from logstream.coordinator.queues.window import PartitionWindow

NOW = 1_000_000
LEASE = 30_000
A, B = 1, 2


def window(n: int = 10, **kw: object) -> PartitionWindow:
    opts: dict = {"capacity": 100, "max_deliveries": 5} | kw
    w = PartitionWindow(0, **opts)
    assert w.admit(n) == min(n, opts["capacity"])
    return w


def state_of(w: PartitionWindow, offset: int) -> tuple[int, int]:
    offs, state = views.column(w, "state")
    _, deliveries = views.column(w, "deliveries")
    i = int(np.flatnonzero(offs == offset)[0])
    return int(state[i]), int(deliveries[i])


def test_acquire_hands_out_available_records_in_offset_order_and_counts_deliveries() -> None:
    w = window()
    assert w.acquire(A, 3, NOW, LEASE).tolist() == [0, 1, 2]
    assert w.acquire(B, 3, NOW, LEASE).tolist() == [3, 4, 5]
    assert state_of(w, 0)[1] == 1


def test_the_backlog_counts_only_what_the_window_can_still_admit() -> None:
    w = window(60)  # 60 of 100 rows in use: room for 40 more
    w.acquire(A, 10, NOW, LEASE)
    ends = {("t", 0): 1_000_000}
    assert views.backlog_estimate([("t", 0, w)], ends) == 50 + 40
    assert views.backlog_estimate([("t", 0, w)], {("t", 0): 70}) == 50 + 10
    assert views.backlog_estimate([("t", 0, w)], {}) == 50  # no log end known: the window


def test_ack_finishes_only_records_the_member_holds() -> None:
    w = window()
    w.acquire(A, 2, NOW, LEASE)
    w.acquire(B, 1, NOW, LEASE)
    res = w.ack(A, [0, 2, 1, 0, 50, -3])
    assert res.codes.tolist() == [OK, NOT_HELD, OK, REPEATED, NOT_IN_WINDOW, NOT_IN_WINDOW]
    assert res.ok.tolist() == [0, 1]
    assert w.ack(A, [0]).codes.tolist() == [FINISHED]  # a repeated ack is harmless
    assert w.ack(A, [5]).codes.tolist() == [NOT_HELD]  # available, held by nobody


def test_ack_below_the_start_offset_reports_finished() -> None:
    w = PartitionWindow(100, capacity=10, max_deliveries=5)
    w.admit(3)
    assert w.ack(A, [99, 0]).codes.tolist() == [FINISHED, FINISHED]


def test_nack_backoff_doubles_per_delivery_and_is_capped() -> None:
    backoff = Backoff(1_000, 5_000)
    assert backoff.delay_ms(np.array([1, 2, 3, 4, 5, 60_000])).tolist() == [
        1_000, 2_000, 4_000, 5_000, 5_000, 5_000,
    ]  # fmt: skip
    w = window(1, max_deliveries=10)
    now = NOW
    assert w.acquire(A, 1, now, LEASE).tolist() == [0]
    for expected in (1_000, 2_000, 4_000, 5_000, 5_000):
        res = w.nack(A, [0], now, backoff)
        assert res.extra.tolist() == [now + expected]
        assert w.acquire(A, 1, now + expected - 1, LEASE).tolist() == []  # not before due
        now += expected
        assert w.acquire(A, 1, now, LEASE).tolist() == [0]


def test_nack_with_explicit_delay_and_zero_delay() -> None:
    w = window()
    w.acquire(A, 2, NOW, LEASE)
    w.nack(A, [0], NOW, Backoff(), delay_ms=500)
    w.nack(A, [1], NOW, Backoff(), delay_ms=0)
    assert state_of(w, 0) == (DELAYED, 1)
    assert state_of(w, 1) == (AVAILABLE, 1)
    assert w.acquire(B, 5, NOW + 499, LEASE).tolist() == [1, 2, 3, 4, 5]
    assert w.acquire(B, 5, NOW + 500, LEASE).tolist() == [0, 6, 7, 8, 9]


def test_a_nacked_record_does_not_hold_back_the_records_behind_it() -> None:
    w = window(20, capacity=4)
    w.acquire(A, 1, NOW, LEASE)
    w.nack(A, [0], NOW, Backoff(), delay_ms=3_600_000)
    taken = []
    for _ in range(10):
        got = w.acquire(A, 4, NOW, LEASE)
        w.ack(A, got)
        w.advance()
        w.admit(4)
        taken += got.tolist()
    # a window of 4 slid 39 records past the delayed one
    assert taken == list(range(1, 40))
    assert w.parked_count == 1
    assert w.acquire(B, 5, NOW + 3_600_000, LEASE).tolist() == [0, 40, 41, 42, 43]


def test_reject_sends_the_record_to_the_dead_letter_path_at_once() -> None:
    w = window()
    w.acquire(A, 2, NOW, LEASE)
    assert w.reject(A, [1], "bad input").all_ok
    offsets, counts, reasons = views.dead_letter_pending(w)
    assert (offsets.tolist(), counts.tolist(), reasons.tolist()) == ([1], [1], [REASON_REJECTED])
    assert w.texts == {1: "bad input"}
    assert w.mark_dead(offsets).tolist() == [1]
    assert w.dead_total == 1
    assert w.ack(A, [1]).codes.tolist() == [FINISHED]


def test_extend_renews_the_lease() -> None:
    w = window()
    w.acquire(A, 1, NOW, 1_000)
    assert w.extend(A, [0], NOW + 900, 1_000).all_ok
    assert w.acquire(B, 1, NOW + 1_500, LEASE).tolist() == [1]  # 0 still held by A
    assert w.extend(B, [0], NOW, 1_000).codes.tolist() == [NOT_HELD]
    assert w.ack(A, [0]).all_ok


def test_a_run_out_lease_makes_the_record_available_with_its_count_kept() -> None:
    w = window()
    w.acquire(A, 1, NOW, 1_000)
    assert w.acquire(B, 1, NOW + 1_000, LEASE).tolist() == [0]
    assert state_of(w, 0)[1] == 2
    assert w.ack(A, [0]).codes.tolist() == [NOT_HELD]  # handed to B meanwhile: refused
    assert w.redelivered_total == 1


def test_a_late_ack_is_accepted_while_nobody_else_took_the_record() -> None:
    w = window()
    w.acquire(A, 1, NOW, 1_000)
    assert w.ack(A, [0]).all_ok  # lease ran out at NOW+1000 but no tick reclaimed it


def test_release_frees_what_a_member_holds_at_once() -> None:
    w = window()
    w.acquire(A, 3, NOW, LEASE)
    w.acquire(B, 1, NOW, LEASE)
    assert w.release(A).tolist() == [0, 1, 2]
    assert w.acquire(B, 3, NOW, LEASE).tolist() == [0, 1, 2]
    assert state_of(w, 0) == (1, 2)


def test_max_deliveries_without_ack_goes_to_the_dead_letter_path() -> None:
    w = window(1, max_deliveries=2)
    w.acquire(A, 1, NOW, 100)
    w.acquire(A, 1, NOW + 100, 100)
    w.tick(NOW + 200)
    assert state_of(w, 0) == (DEAD_PENDING, 2)
    assert views.dead_letter_pending(w)[2].tolist() == [REASON_MAX_DELIVERIES]
    assert w.acquire(B, 1, NOW + 300, 100).tolist() == []  # never delivered a third time


def test_nack_at_max_deliveries_dead_letters_instead_of_retrying() -> None:
    w = window(1, max_deliveries=1)
    w.acquire(A, 1, NOW, LEASE)
    res = w.nack(A, [0], NOW, Backoff(), reason_text="gave up")
    assert res.extra.tolist() == [-1]
    assert state_of(w, 0) == (DEAD_PENDING, 1)
    assert w.texts == {0: "gave up"}


def test_advance_slides_over_the_finished_prefix_and_stops_at_unfinished() -> None:
    w = window(5, capacity=5)
    assert w.room == 0
    w.acquire(A, 5, NOW, LEASE)
    w.ack(A, [0, 1, 3])
    assert w.advance() == 2
    assert w.room == 2
    assert w.admit(10) == 2
    assert w.end_offset == 7


def test_scheduled_records_wait_until_due_without_holding_back_others() -> None:
    w = PartitionWindow(0, capacity=3, max_deliveries=5)
    w.admit(3, deliver_at_ms=np.array([NOW + 10_000, 0, 0]))
    assert w.acquire(A, 5, NOW, LEASE).tolist() == [1, 2]
    w.ack(A, [1, 2])
    assert w.advance() == 3  # slid past the scheduled record (parked)
    assert w.admit(3) == 3
    assert w.acquire(A, 5, NOW, LEASE).tolist() == [3, 4, 5]
    assert w.acquire(A, 5, NOW + 10_000, LEASE).tolist() == [0]
    assert state_of(w, 0)[1] == 1


def test_parked_table_is_capped_and_then_delayed_records_hold_the_window() -> None:
    w = PartitionWindow(0, capacity=4, max_deliveries=5)
    w.max_parked = 2
    later = NOW + 10_000
    w.admit(4, deliver_at_ms=np.array([later, later, later, 0]))
    assert w.advance() == 2  # two parked; the third delayed record does not fit: it holds
    assert w.parked_count == 2
    assert w.room == 2
    assert w.admit(5) == 2
    assert w.acquire(A, 10, NOW, LEASE).tolist() == [3, 4, 5]
    assert w.acquire(A, 10, later, LEASE).tolist() == [0, 1, 2]
    w.ack(A, [0, 1, 2, 3, 4, 5])
    assert w.advance() == 6 and w.parked_count == 0


def test_expired_records_are_counted_once_whatever_the_action() -> None:
    for drop in (False, True):
        w = PartitionWindow(0, capacity=10, max_deliveries=5, drop_expired=drop)
        w.admit(3, expires_at_ms=np.array([NOW + 100, NOW + 100, 0]))
        w.tick(NOW + 100)
        w.tick(NOW + 200)
        assert w.expired_total == 2


def test_expired_records_are_dead_lettered_or_dropped() -> None:
    expires = np.array([NOW + 100, 0, NOW + 100])
    w = PartitionWindow(0, capacity=10, max_deliveries=5)
    w.admit(3, expires_at_ms=expires)
    w.acquire(A, 1, NOW, LEASE)  # 0 is being worked on: it does not expire under its holder
    w.tick(NOW + 100)
    assert state_of(w, 2) == (DEAD_PENDING, 0)
    assert views.dead_letter_pending(w)[2].tolist() == [REASON_EXPIRED]
    d = PartitionWindow(0, capacity=10, max_deliveries=5, drop_expired=True)
    d.admit(3, expires_at_ms=expires)
    d.tick(NOW + 100)
    assert state_of(d, 0) == (DROPPED, 0)
    assert d.dropped_total == 2


def test_key_ordered_hands_out_one_record_per_key_in_offset_order() -> None:
    keys = np.array([7, 7, 8, 7, 8, 9], np.uint64)
    w = PartitionWindow(0, capacity=10, max_deliveries=5, key_ordered=True)
    w.admit(6, keys=keys)
    assert w.acquire(A, 10, NOW, LEASE).tolist() == [0, 2, 5]
    assert w.acquire(B, 10, NOW, LEASE).tolist() == []  # every key is busy
    w.ack(A, [0])
    assert w.acquire(B, 10, NOW, LEASE).tolist() == [1]


def test_key_ordered_nack_holds_back_only_its_own_key() -> None:
    keys = np.array([7, 8, 7, 8], np.uint64)
    w = PartitionWindow(0, capacity=10, max_deliveries=5, key_ordered=True)
    w.admit(4, keys=keys)
    w.acquire(A, 10, NOW, LEASE)
    w.nack(A, [0], NOW, Backoff(), delay_ms=1_000)
    w.ack(A, [1])
    assert w.acquire(A, 10, NOW, LEASE).tolist() == [3]  # key 8 flows; key 7 waits for 0
    assert w.acquire(A, 10, NOW + 1_000, LEASE).tolist() == [0]


def test_records_without_key_are_not_ordered_in_key_ordered_mode() -> None:
    w = PartitionWindow(0, capacity=10, max_deliveries=5, key_ordered=True)
    w.admit(3, keys=np.zeros(3, np.uint64), keyed=np.array([0, 0, 1], np.uint8))
    assert w.acquire(A, 10, NOW, LEASE).tolist() == [0, 1, 2]


def test_no_ack_mode_acknowledges_on_hand_out() -> None:
    w = window(3, auto_ack=True)
    assert w.acquire(A, 5, NOW, LEASE).tolist() == [0, 1, 2]
    assert state_of(w, 0) == (ACKED, 1)
    assert w.advance() == 3


def test_rows_shifted_down_keep_their_state() -> None:
    w = PartitionWindow(0, capacity=4, max_deliveries=100)
    handed: dict[int, int] = {}
    acked: set[int] = set()
    for _ in range(50):
        w.admit(4)
        got = w.acquire(A, 3, NOW, LEASE).tolist()
        for o in got:
            handed[o] = handed.get(o, 0) + 1
        w.ack(A, got[:2])
        acked.update(got[:2])
        w.release(A)
        w.advance()
    offs, deliveries = views.column(w, "deliveries")
    _, state = views.column(w, "state")
    assert w.end_offset - w.start_offset <= 4
    for o, d, s in zip(offs.tolist(), deliveries.tolist(), state.tolist(), strict=True):
        assert d == handed.get(o, 0)
        assert (s == ACKED) == (o in acked)
    assert set(range(w.start_offset)) <= acked
    assert to_ranges(np.array([1, 2, 3, 7, 9, 10])) == [(1, 4), (7, 8), (9, 11)]


def test_a_parked_record_handed_out_does_not_hide_the_dense_ones() -> None:
    w = PartitionWindow(0, capacity=2, max_deliveries=5)
    w.admit(2, deliver_at_ms=np.array([NOW - 10, 0]))
    w.advance()  # the due-but-not-ticked record is parked
    assert w.acquire(A, 1, NOW, LEASE).tolist() == [0]
    assert w.acquire(A, 1, NOW, LEASE).tolist() == [1]


def test_an_extend_may_shorten_the_lease() -> None:
    w = window(1)
    w.acquire(A, 1, NOW, 200)
    w.extend(A, [0], NOW, 50)
    w.tick(NOW + 50)
    assert state_of(w, 0) == (AVAILABLE, 1)
