"""``merge_acks``: a push session's acks from several member messages become one engine call
only where that cannot change an outcome."""

from __future__ import annotations

import numpy as np

from logstream.broker.queue_settle import ACK, NACK, Settle, merge_acks


def _ack(offsets: list[int], partition: int = 0) -> Settle:
    return Settle("t", partition, ACK, np.array(offsets, np.int64))


def _shape(settles: list[Settle]) -> list[tuple[int, int, list[int]]]:
    return [(s.partition, s.kind, s.offsets.tolist()) for s in settles]


def test_rising_acks_of_one_partition_are_joined() -> None:
    merged = merge_acks([_ack([3]), _ack([4, 6]), _ack([9])])
    assert _shape(merged) == [(0, ACK, [3, 4, 6, 9])]


def test_other_kinds_partitions_and_repeats_are_kept_apart_in_order() -> None:
    nack = Settle("t", 0, NACK, np.array([5], np.int64), delay_ms=10)
    settles = [_ack([1]), nack, _ack([7]), _ack([7]), _ack([8], partition=1), _ack([2])]
    assert _shape(merge_acks(settles)) == [
        (0, ACK, [1]),
        (0, NACK, [5]),
        (0, ACK, [7]),
        (0, ACK, [7]),  # a repeat keeps its own outcome (refused as already finished)
        (1, ACK, [8]),
        (0, ACK, [2]),
    ]
    assert merge_acks(settles)[1] is nack  # untouched: its delay travels with it


def test_an_ack_going_back_is_not_joined() -> None:
    assert _shape(merge_acks([_ack([5, 9]), _ack([6])])) == [(0, ACK, [5, 9]), (0, ACK, [6])]
    assert _shape(merge_acks([_ack([9, 5]), _ack([10])])) == [(0, ACK, [9, 5]), (0, ACK, [10])]
