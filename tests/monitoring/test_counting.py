"""The per-batch counting the fetch path does: record counts from batch headers only."""

from __future__ import annotations

from logstream.broker.http.metrics import BrokerMetrics, batch_record_count
from logstream.codec import encode_batch


def test_record_count_reads_each_whole_batch_header() -> None:
    batches = [encode_batch([b"v"] * n, base_offset=10 * i) for i, n in enumerate((1, 7, 300))]
    data = b"".join(batches)
    assert batch_record_count(data) == 308
    assert batch_record_count(memoryview(data)) == 308
    assert batch_record_count(b"") == 0
    # a partial last batch (a fetch cut at its byte budget) is not counted
    assert batch_record_count(data[:-5]) == 8
    assert batch_record_count(data[:10]) == 0


def test_traffic_is_counted_per_partition_and_forgotten_with_the_topic() -> None:
    metrics = BrokerMetrics(100, 1.0)

    class Log:
        topic, partition, segment_count = "t", 1, 1

    metrics.produced(Log(), records=5, nbytes=400, segments_before=1)
    metrics.produced(Log(), records=2, nbytes=100, segments_before=1)
    metrics.fetched("t", 1, encode_batch([b"a", b"b", b"c"]))
    counts = metrics.traffic()[("t", 1)]
    assert counts[:2] == (7, 500)
    assert counts[2] == 3 and counts[3] > 0
    metrics.forget({("u", 0)})
    assert metrics.traffic() == {}
