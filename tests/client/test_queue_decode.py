"""``decode_records``: a fetch answer's batches as QueueMessage objects, whether the
batches hold exactly the records handed out (what the broker sends) or more, with the
offsets as lists or as runs; and settlements sent as offset runs."""

from __future__ import annotations

import pytest

from logstream import errors
from logstream.client.queue_message import ACK, decode_records
from logstream.client.queue_records import PartitionRecords
from logstream.client.queue_settlements import (
    MAX_REQUEST_RUN_RECORDS,
    MAX_RUN_RECORDS,
    Pending,
    settlements,
)
from logstream.codec import encode_batch, encode_headers
from logstream.protocol import queue_pb2

KEYS = [b"k0", None, b"k2", b"k3", None]
VALUES = [b"v0", b"v1", None, b"v3", b"v4"]
HEADERS = [(), (("h", b"1"),), (), (("a", b"x"), ("b", b"")), ()]
STAMPS = [1_000, 1_001, 1_005, 1_002, 1_009]


def _batch(rows: range, *, headers: bool) -> bytes:
    return encode_batch(
        [VALUES[i] for i in rows],
        keys=[KEYS[i] for i in rows],
        timestamps=[STAMPS[i] for i in rows],
        headers=[encode_headers(HEADERS[i]) for i in rows] if headers else None,
        base_offset=100 + rows[0],
    )


def _expected(rows: list[int], counts: list[int], *, headers: bool) -> list[tuple]:
    return [
        ("t", 3, 100 + i, STAMPS[i], KEYS[i], VALUES[i], HEADERS[i] if headers else (), c)
        for i, c in zip(rows, counts, strict=True)
    ]


def _fields(msgs: list) -> list[tuple]:
    return [
        (m.topic, m.partition, m.offset, m.timestamp_ms, m.key, m.value, m.headers,
         m.delivery_count)
        for m in msgs
    ]  # fmt: skip


def test_batches_holding_exactly_the_records_handed_out() -> None:
    for headers in (False, True):
        data = _batch(range(0, 2), headers=headers) + _batch(range(3, 5), headers=headers)
        qr = queue_pb2.QueueRecords(
            topic="t", partition=3, batches=data, offsets=[100, 101, 103, 104],
            delivery_counts=[1, 2, 1, 3],
        )  # fmt: skip
        got = decode_records([qr], None)
        assert _fields(got) == _expected([0, 1, 3, 4], [1, 2, 1, 3], headers=headers)


def test_whole_stored_batches_give_only_the_records_handed_out_in_the_given_order() -> None:
    for headers in (False, True):
        qr = queue_pb2.QueueRecords(
            topic="t", partition=3, batches=_batch(range(0, 5), headers=headers),
            offsets=[103, 101, 107], delivery_counts=[2, 1, 1],
        )  # fmt: skip
        got = decode_records([qr], None)
        # 107 is not in the batches: left out
        assert _fields(got) == _expected([3, 1], [2, 1], headers=headers)


def test_runs_decode_as_the_lists_would() -> None:
    # one run (kept as a range), several runs, and a run over whole stored batches
    cases = [
        ([100, 2, 103, 2], [1, 1, 2, 1, 1, 1, 3, 1], [0, 1, 3, 4], [1, 2, 1, 3]),
        ([100, 5], [1, 5], [0, 1, 2, 3, 4], [1] * 5),
        ([101, 2], [4, 2], [1, 2], [4, 4]),
    ]
    for offset_runs, count_runs, rows, counts in cases:
        qr = queue_pb2.QueueRecords(
            topic="t", partition=3, batches=_batch(range(0, 5), headers=True),
            offset_runs=offset_runs, delivery_count_runs=count_runs,
        )  # fmt: skip
        assert _fields(decode_records([qr], None)) == _expected(rows, counts, headers=True)
    bad = queue_pb2.QueueRecords(
        topic="t", partition=3, batches=_batch(range(0, 5), headers=False),
        offset_runs=[100, 3], delivery_count_runs=[1, 2],
    )  # fmt: skip
    with pytest.raises(errors.CorruptRecordError):
        decode_records([bad], None)


def test_settlements_send_runs_up_to_the_bound_and_offsets_beyond() -> None:
    def records(first: int, n: int) -> PartitionRecords:
        r = PartitionRecords("t", 0, None, [], [], [])
        r.offsets = range(first, first + n)  # as decoded from one run (only offsets are read)
        return r

    big = MAX_RUN_RECORDS - 10
    a, b, c = records(0, big), records(big, 20), records(big + 20, 4)
    pending: Pending = {("t", 0, ACK, None, "", 0): [(a, list(range(big))), (b, list(range(20)))]}
    pending[("t", 0, ACK, None, "", 0)].append((c, [0, 2]))  # not a run: offsets
    [s] = settlements(pending, runs=True)
    assert list(s.offset_runs) == [0, big]  # b would pass the bound: offsets
    assert list(s.offsets) == [*range(big, big + 20), big + 20, big + 22]
    [s] = settlements(pending)  # a broker without runs
    assert not s.offset_runs and len(s.offsets) == big + 22


def test_one_requests_settlements_send_runs_up_to_the_request_bound() -> None:
    per = MAX_RUN_RECORDS
    parts = MAX_REQUEST_RUN_RECORDS // per + 1  # one partition more than the runs may cover
    pending: Pending = {}
    for p in range(parts):
        r = PartitionRecords("t", p, None, [], [], [])
        r.offsets = range(0, per)
        pending[("t", p, ACK, None, "", 0)] = [(r, list(range(per)))]
    out = settlements(pending, runs=True)
    in_runs = sum(sum(s.offset_runs[1::2]) for s in out)
    assert in_runs == MAX_REQUEST_RUN_RECORDS  # what the broker takes in one request
    assert sum(len(s.offsets) for s in out) == parts * per - in_runs  # the rest as offsets
