"""The state log's byte format: every record type round-trips; sizes are as documented."""

from __future__ import annotations

import numpy as np

from logstream.coordinator.queues import statelog as sl
from logstream.coordinator.queues.recovery import replay
from logstream.coordinator.queues.settings import QueueSettings


def test_admit_round_trips_with_and_without_optional_arrays() -> None:
    bare = sl.encode_admit(3, 100, 5, {})
    assert len(bare) == sl.ADMIT.size
    assert sl.decode_admit(bare) == (3, 100, 5, {})
    arrays = {
        "keys": np.arange(5, dtype=np.uint64),
        "keyed": np.array([1, 0, 1, 1, 1], np.uint8),
        "deliver_at_ms": np.full(5, 7, np.int64),
        "expires_at_ms": np.full(5, 9, np.int64),
        "ts_ms": np.arange(5, dtype=np.int64),
    }
    pid, first, count, back = sl.decode_admit(sl.encode_admit(1, 0, 5, arrays))
    assert (pid, first, count) == (1, 0, 5)
    assert {k: v.tolist() for k, v in back.items()} == {k: v.tolist() for k, v in arrays.items()}


def test_changes_are_stored_as_runs_of_offsets() -> None:
    offsets = np.array([5, 6, 7, 9, 100, 101], np.int64)
    rec = sl.encode_ack(2, offsets)
    assert len(rec) == sl.ACK.size + 3 * sl.RUN.itemsize
    kind, pid, back, value = sl.decode_change(rec)
    assert (kind, pid, back.tolist(), value) == (sl.T_ACK, 2, offsets.tolist(), 0)
    assert sl.decode_change(sl.encode_nack(0, offsets, 1234))[3] == 1234
    assert sl.decode_change(sl.encode_dead(0, offsets, 2))[3] == 2
    assert sl.decode_change(sl.encode_acquire(0, offsets, True))[3] == 1
    one_run = sl.encode_ack(0, np.arange(10_000, dtype=np.int64))
    assert len(one_run) == sl.ACK.size + sl.RUN.itemsize


def test_window_rows_are_split_into_bounded_records() -> None:
    n = sl.ROWS_PER_RECORD + 3
    rows = {name: np.zeros(n, dt) for name, dt in sl.ROW_COLUMNS}
    recs = sl.encode_window(4, 10, 10 + n, (1, 2, 3, 4, 5, 6), np.arange(10, 10 + n), rows)
    assert [r[0] for r in recs] == [sl.T_WINDOW, sl.T_WINDOW_ROWS, sl.T_WINDOW_ROWS]
    assert sl.decode_window(recs[0]) == (4, 10, 10 + n, (1, 2, 3, 4, 5, 6))
    # tail counters absent in records written before they existed read as 0
    old = recs[0][: sl.WINDOW.size]
    assert sl.decode_window(old) == (4, 10, 10 + n, (1, 2, 3, 4, 0, 0))
    before_lost = recs[0][: sl.WINDOW.size + sl.WINDOW_EXPIRED.size]
    assert sl.decode_window(before_lost) == (4, 10, 10 + n, (1, 2, 3, 4, 5, 0))
    pid, offsets, back = sl.decode_window_rows(recs[2])
    assert len(back["state"]) == 3
    assert (pid, offsets.tolist()) == (4, list(range(10 + sl.ROWS_PER_RECORD, 10 + n)))


def test_unknown_record_types_are_skipped_on_replay() -> None:
    records = [
        sl.encode_settings(QueueSettings()),
        sl.encode_partition(0, "t", 0, 0),
        bytes([200]) + b"from a newer version",
        sl.encode_admit(0, 0, 3, {}),
    ]
    state = replay(records)
    assert state.partitions[0][2].end_offset == 3
