"""SubscriptionState alone: what each change does to positions, epochs, the buffer and the
fetcher, with no thread and no transport."""

from __future__ import annotations

import pytest

from logstream import errors
from logstream.client.chunks import Chunk, RecordList, chunks_from_records
from logstream.client.subscription import SubscriptionState
from logstream.codec import encode_batch, stamp_base_offset
from logstream.types import TopicPartition

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


class CountingControl:
    def __init__(self) -> None:
        self.cancels = 0
        self.interrupts = 0

    def cancel_inflight(self) -> None:
        self.cancels += 1

    def interrupt(self) -> None:
        self.interrupts += 1


def _chunks(tp: TopicPartition, base: int, n: int, epoch: int = 0) -> list[Chunk]:
    buf = bytearray(encode_batch([b"%d" % (base + i) for i in range(n)], timestamps=7))
    stamp_base_offset(buf, base)
    return chunks_from_records(tp.topic, tp.partition, epoch, bytes(buf), base, verify=True)


def _state(reset: int | None = -2, max_buffer_bytes: int = 1 << 20) -> SubscriptionState:
    state = SubscriptionState(reset=reset, max_buffer_bytes=max_buffer_bytes)
    state.control = CountingControl()
    return state


def _queue(state: SubscriptionState, tp: TopicPartition, base: int, n: int) -> None:
    chunks = _chunks(tp, base, n, state.epochs[tp])
    state.add_chunks([(tp, chunks, base + n)], {tp: state.epochs[tp]})


def _poll(state: SubscriptionState, max_records: int = 100) -> list[int]:
    out = RecordList()
    state.take(0.0, max_records, out.take_from)
    return [r.offset for r in out]


def test_assign_keeps_positions_of_kept_partitions_and_starts_new_ones_unknown() -> None:
    state = _state()
    state.assign([TP0])
    state.seek(TP0, 5)
    state.assign([TP0, TP1])
    assert state.position(TP0) == 5
    assert state.position(TP1) is None
    assert state.assigned() == [TP0, TP1]


def test_reassigning_away_forgets_the_position_and_cancels_the_fetch() -> None:
    state = _state()
    state.assign([TP0])
    state.seek(TP0, 5)
    control = state.control
    assert isinstance(control, CountingControl)
    before = control.cancels
    state.assign([TP1])
    assert not state.is_assigned(TP0)
    assert state.position(TP0) is None
    assert control.cancels == before + 1


def test_take_returns_buffered_records_and_advances_the_position() -> None:
    state = _state()
    state.assign([TP0])
    state.seek(TP0, 0)
    _queue(state, TP0, 0, 5)
    assert _poll(state, max_records=3) == [0, 1, 2]
    assert state.position(TP0) == 3
    assert _poll(state) == [3, 4]
    assert state.buffer.nbytes == 0


def test_a_seek_makes_buffered_chunks_stale() -> None:
    state = _state()
    state.assign([TP0])
    state.seek(TP0, 0)
    _queue(state, TP0, 0, 5)
    state.seek(TP0, 100)
    assert state.buffer.nbytes == 0
    assert state.fetch_offsets[TP0] == 100
    assert _poll(state) == []


def test_chunks_fetched_under_an_old_epoch_are_not_queued() -> None:
    state = _state()
    state.assign([TP0])
    state.seek(TP0, 0)
    old = state.epochs[TP0]
    state.seek(TP0, 0)
    state.add_chunks([(TP0, _chunks(TP0, 0, 3, old), 3)], {TP0: old})
    assert _poll(state) == []


def test_pause_stops_fetching_and_returning_until_resume() -> None:
    state = _state()
    state.assign([TP0, TP1])
    state.seek(TP0, 0)
    state.seek(TP1, 0)
    _queue(state, TP0, 0, 2)
    state.pause([TP0])
    with state.lock:
        assert state.fetchable() == [TP1]
    assert _poll(state) == []
    state.resume([TP0])
    with state.lock:
        assert state.fetchable() == [TP0, TP1]
    assert state.paused_partitions() == set()


def test_a_full_buffer_leaves_nothing_to_fetch() -> None:
    state = _state(max_buffer_bytes=10)
    state.assign([TP0])
    state.seek(TP0, 0)
    _queue(state, TP0, 0, 3)
    with state.lock:
        assert state.fetchable() == []
    _poll(state)
    with state.lock:
        assert state.fetchable() == [TP0]


def test_needs_reset_lists_partitions_without_a_position_only_with_a_policy() -> None:
    state = _state(reset=-2)
    state.assign([TP0, TP1])
    state.seek(TP1, 4)
    with state.lock:
        assert state.needs_reset() == [TP0]
    no_policy = _state(reset=None)
    no_policy.assign([TP0])
    with no_policy.lock:
        assert no_policy.needs_reset() == []


def test_apply_reset_is_ignored_for_a_partition_that_changed_meanwhile() -> None:
    state = _state()
    state.assign([TP0, TP1])
    epochs = state.epochs_of([TP0, TP1])
    state.seek(TP1, 9)  # the application sought while the lookup ran
    got = state.apply_reset({TP0: 3, TP1: 50}, epochs)
    assert got == {TP0: 3, TP1: 50}
    assert state.position(TP0) == 3
    assert state.position(TP1) == 9


def test_auto_offset_reset_error_raises_on_take_without_a_position() -> None:
    state = _state(reset=None)
    state.assign([TP0])
    with pytest.raises(errors.OffsetOutOfRangeError, match="seek"):
        _poll(state)


def test_a_queued_error_surfaces_once() -> None:
    state = _state()
    state.assign([TP0])
    state.push_error(errors.BrokerNotAvailableError("down"))
    with pytest.raises(errors.BrokerNotAvailableError):
        _poll(state)
    assert _poll(state) == []


def test_halt_stops_fetching_until_a_seek_but_not_for_a_stale_epoch() -> None:
    state = _state()
    state.assign([TP0])
    state.seek(TP0, 0)
    epoch = state.epochs[TP0]
    assert not state.halt(TP0, epoch - 1)
    assert state.halt(TP0, epoch)
    with state.lock:
        assert state.fetchable() == []
    state.seek(TP0, 0)
    with state.lock:
        assert state.fetchable() == [TP0]


def test_lose_position_forgets_it_so_that_it_is_reset_again() -> None:
    state = _state()
    state.assign([TP0])
    state.seek(TP0, 7)
    state.lose_position(TP0, state.epochs[TP0])
    assert state.position(TP0) is None


def test_known_positions_skip_unknown_ones() -> None:
    state = _state()
    state.assign([TP0, TP1])
    state.seek(TP0, 2)
    assert state.known_positions() == {TP0: 2}
    assert state.known_positions([TP1]) == {}


def test_wake_readers_interrupts_the_fetcher() -> None:
    state = _state()
    control = state.control
    assert isinstance(control, CountingControl)
    state.wake_readers()
    assert control.interrupts == 1


def test_iteration_moves_positions_one_record_at_a_time_and_a_break_refetches_the_rest() -> None:
    state = _state()
    state.assign([TP0])
    state.seek(TP0, 0)
    _queue(state, TP0, 0, 4)
    out = RecordList()
    state.take(0.0, 100, out.take_from, advance=False)
    assert state.position(TP0) == 0  # not moved by taking
    it = state.yield_positioned(list(out))
    assert next(it).offset == 0
    assert state.position(TP0) == 1
    assert next(it).offset == 1
    generation = state.generation
    it.close()  # the loop broke out with two records not yielded
    assert state.position(TP0) == 2
    assert state.fetch_offsets[TP0] == 2
    assert state.generation > generation


def test_close_wakes_everyone_once() -> None:
    state = _state()
    assert state.close()
    assert not state.close()
    with pytest.raises(errors.ClientClosedError):
        _poll(state)
