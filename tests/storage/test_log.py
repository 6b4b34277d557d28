"""PartitionLog and LogManager behaviour over real files."""

from __future__ import annotations

import os
import struct

import pytest
from storage_helpers import eio, make_batch

from logstream.codec import (
    COMPRESSION_MASK,
    CRC_POS,
    CRC_START,
    HEADER,
    HEADER_SIZE,
    compression,
    decode_batch,
    encode_batch,
    encode_small_batch,
    iter_batches,
    read_header,
)
from logstream.codec.crc import crc32c
from logstream.errors import (
    CorruptRecordError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidTopicError,
    KafkaStorageError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logstream.storage import (
    LogManager,
    PartitionLog,
    TopicConfig,
    validate_topic_name,
)

SMALL = {"segment_bytes": 2048, "flush_policy": "never"}


def offsets_of(data: bytes) -> list[int]:
    return [int(o) for b in iter_batches(data) for o in b.offsets]


@pytest.fixture
def mgr(tmp_path, clock):
    m = LogManager.open(tmp_path / "data", clock=clock)
    yield m
    m.close()


def test_append_assigns_dense_offsets_and_reads_back(mgr):
    mgr.create_topic("events", 1, SMALL)
    log = mgr.get_log("events", 0)
    results = [log.append(make_batch(3, tag=i)) for i in range(50)]
    assert [r.base_offset for r in results] == list(range(0, 150, 3))
    assert results[-1].last_offset == 149
    assert log.log_end_offset == 150 and log.log_start_offset == 0
    assert log.segment_count > 1  # rolled by size
    for offset in (0, 1, 2, 3, 77, 149):
        data = log.read(offset, 1)  # at least one whole batch even with a tiny max_bytes
        batch = decode_batch(data)
        assert batch.header.base_offset <= offset <= batch.header.last_offset
        assert len(list(iter_batches(data))) == 1
    everything = log.read(0, 10**9)  # spans segments
    assert offsets_of(everything) == list(range(150))
    assert isinstance(everything, bytes)


def test_read_respects_max_bytes_in_whole_batches(mgr):
    mgr.create_topic("t", 1, {"segment_bytes": 1 << 20})
    log = mgr.get_log("t", 0)
    size = len(make_batch(2))
    for i in range(20):
        log.append(make_batch(2, tag=i))
    data = log.read(4, size * 3 + size // 2)
    assert len(data) == size * 3 and offsets_of(data) == list(range(4, 10))


def test_read_at_end_is_empty_and_out_of_range_names_earliest(mgr):
    mgr.create_topic("t")
    log = mgr.get_log("t", 0)
    assert log.read(0) == b""
    log.append(make_batch(2))
    assert log.read(2) == b""
    with pytest.raises(OffsetOutOfRangeError) as err:
        log.read(3)
    assert err.value.earliest == 0 and err.value.latest == 2
    with pytest.raises(OffsetOutOfRangeError, match="earliest offset is 0"):
        log.read(-1)


def test_a_built_batch_appends_trusted_within_the_size_limit(mgr):
    mgr.create_topic("events", 1, {**SMALL, "max_batch_bytes": 400})
    log = mgr.get_log("events", 0)
    built = encode_small_batch([b"k", None], [b"v" * 10, b"w"], [1000, 1002], [b"", b""])
    assert log.append(built.data, trusted=True).base_offset == 0
    assert log.append(built.data).base_offset == 2
    first, second = iter_batches(log.read(0, 10**6))
    assert first.value_list() == second.value_list() == [b"v" * 10, b"w"]
    big = encode_small_batch([None], [b"x" * 400], [1000], [b""])
    with pytest.raises(MessageTooLargeError):
        log.append(big.data, trusted=True)
    assert log.log_end_offset == 4


def test_append_rejects_bad_batches_without_writing(mgr):
    mgr.create_topic("t", 1, {"max_batch_bytes": 500})
    log = mgr.get_log("t", 0)
    with pytest.raises(MessageTooLargeError):
        log.append(make_batch(10, value_size=100))
    damaged = bytearray(make_batch(2))
    damaged[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        log.append(damaged)
    with pytest.raises(CorruptRecordError):
        log.append(make_batch(1) + make_batch(1))
    assert log.log_end_offset == 0
    assert log.append(memoryview(make_batch(2))).base_offset == 0


def _rewrite(batch: bytes, **fields: int) -> bytes:
    """``batch`` with header fields replaced and the CRC recomputed (so only the rules behind
    the checksum can catch the lie)."""
    buf = bytearray(batch)
    h = read_header(buf)._replace(**fields)
    HEADER.pack_into(buf, 0, *h)
    struct.pack_into("<I", buf, CRC_POS, crc32c(memoryview(buf)[CRC_START:]))
    return bytes(buf)


def _with_section(batch: bytes, section: bytes, codec: int) -> bytes:
    h = read_header(batch)
    attributes = (h.attributes & ~COMPRESSION_MASK) | codec
    return _rewrite(
        batch[:HEADER_SIZE] + section,
        batch_length=HEADER_SIZE + len(section),
        records_length=len(section),
        attributes=attributes,
    )


@pytest.mark.parametrize("codec", [compression.ZSTD, compression.LZ4])
def test_append_refuses_a_record_section_that_contradicts_its_header(mgr, codec):
    """A batch with a valid CRC whose records cannot be decoded would be a poison pill for
    every consumer (and a huge record_count would burn offsets): refuse it, write nothing."""
    mgr.create_topic("t")
    log = mgr.get_log("t", 0)
    good = encode_batch(
        [b"a", b"bb", None], keys=[b"k", None, b"kk"], timestamps=[5, 9, 7], compression_type=codec
    )
    plain = encode_batch([b"a", b"bb"], keys=[b"k", None], timestamps=[5, 9])
    section = bytes(plain[HEADER_SIZE:])
    lies = {
        "huge record_count": _rewrite(good, record_count=2**31 - 1),
        "record_count + 1": _rewrite(good, record_count=4),
        "decompresses to garbage": _with_section(
            good, compression.compress(codec, os.urandom(60)), codec
        ),
        "not a frame": _with_section(good, b"\x28\xb5\x2f\xfd" + os.urandom(30), codec),
        "keys_length lie": _rewrite(good, keys_length=2, values_length=4),
        "max_timestamp lie": _rewrite(good, max_timestamp=2**62),
        "plain: columns disagree": _rewrite(  # key lengths [0, -1] but keys_length 1
            plain[:HEADER_SIZE] + (0).to_bytes(4, "little") + section[4:]
        ),
        "plain: max_timestamp lie": _rewrite(plain, max_timestamp=10),
        "plain: negative length": _rewrite(
            plain[:HEADER_SIZE] + (-2).to_bytes(4, "little", signed=True) + section[4:],
        ),
    }
    for what, batch in lies.items():
        with pytest.raises(CorruptRecordError):  # CORRUPT_MESSAGE or INVALID_RECORD
            log.append(batch)
            pytest.fail(f"accepted: {what}")
    assert log.log_end_offset == 0
    assert log.append(good).base_offset == 0
    assert log.append(plain).base_offset == 3
    assert [int(o) for b in iter_batches(log.read(0)) for o in b.offsets] == [0, 1, 2, 3, 4]


def test_append_stamps_offset_in_stored_copy_only(mgr):
    mgr.create_topic("t")
    log = mgr.get_log("t", 0)
    log.append(make_batch(1))
    original = bytearray(make_batch(1))
    log.append(original)
    assert decode_batch(bytes(original)).header.base_offset == 0  # caller's buffer untouched
    assert decode_batch(log.read(1)).header.base_offset == 1


def test_a_trusted_append_stores_what_a_checked_one_does(mgr):
    mgr.create_topic("checked")
    mgr.create_topic("trusted")
    checked, trusted = mgr.get_log("checked", 0), mgr.get_log("trusted", 0)
    for i in range(5):
        batch = make_batch(3, tag=i)
        a, b = checked.append(batch), trusted.append(batch, trusted=True)
        assert (a.base_offset, a.last_offset) == (b.base_offset, b.last_offset)
    assert trusted.read(0, 10**9) == checked.read(0, 10**9)
    # the stored copies pass the CRC check of a read (iter_batches verifies)
    assert offsets_of(trusted.read(0, 10**9)) == list(range(15))


def test_offset_for_timestamp(mgr):
    mgr.create_topic("t", 1, SMALL)
    log = mgr.get_log("t", 0)
    for i in range(40):
        log.append(make_batch(2, ts=1000 + 10 * i, tag=i))
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(1000) == 0
    assert log.offset_for_timestamp(1001) == 0  # batch 0 holds 1000, 1001
    assert log.offset_for_timestamp(1002) == 2
    assert log.offset_for_timestamp(1000 + 10 * 39) == 78
    assert log.offset_for_timestamp(10**13) is None


def test_record_for_timestamp_finds_the_first_record_and_its_timestamp(mgr):
    """Kafka's semantic: the first record (not batch) whose timestamp is >= t, and that
    record's timestamp. Timestamps inside a batch need not be ordered."""
    mgr.create_topic("t", 1, SMALL)
    log = mgr.get_log("t", 0)
    log.append(encode_batch([b"a", b"b", b"c"], timestamps=[1000, 1005, 1002]))  # 0..2
    log.append(encode_batch([b"d", b"e"], timestamps=[990, 2000]))  # 3..4
    for i in range(30):  # enough to roll a few segments
        log.append(make_batch(2, ts=3000 + 10 * i, value_size=100, tag=i))  # 5..64
    assert log.segment_count > 2
    assert log.record_for_timestamp(0) == (0, 1000)
    assert log.record_for_timestamp(1000) == (0, 1000)
    assert log.record_for_timestamp(1001) == (1, 1005)
    assert log.record_for_timestamp(1005) == (1, 1005)
    assert log.record_for_timestamp(1006) == (4, 2000)  # not 3: that record says 990
    assert log.record_for_timestamp(3001) == (6, 3001)  # second record of a batch
    assert log.record_for_timestamp(3000 + 10 * 29 + 1) == (64, 3291)
    assert log.record_for_timestamp(3292) is None
    # every answer agrees with a scan of all records
    records = [
        (int(o), int(ts))
        for b in iter_batches(log.read(0, 1 << 20))
        for o, ts in zip(b.offsets, b.timestamps, strict=True)
    ]
    for t in range(980, 3300, 7):
        expected = next(((o, ts) for o, ts in records if ts >= t), None)
        assert log.record_for_timestamp(t) == expected, t


def test_roll_by_age_uses_the_clock(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as m:
        m.create_topic("t", 1, {"segment_ms": 1000})
        log = m.get_log("t", 0)
        log.append(make_batch())
        log.append(make_batch())
        assert log.segment_count == 1
        clock.advance(1000)
        log.append(make_batch())
        assert log.segment_count == 2


def test_reopen_keeps_everything_and_costs_no_scan(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as m:
        m.create_topic("t", 2, SMALL)
        for i in range(60):
            m.get_log("t", i % 2).append(make_batch(2, ts=5000 + i, tag=i))
        before = m.get_log("t", 0).read(0, 10**9)
        segs = m.get_log("t", 0).segment_count
    with LogManager.open(tmp_path, clock=clock) as m:
        report = m.recovery_reports[("t", 0)]
        assert report.clean_shutdown and report.batches_scanned == 0
        log = m.get_log("t", 0)
        assert log.segment_count == segs and log.log_end_offset == 60
        assert log.read(0, 10**9) == before
        assert log.append(make_batch(1)).base_offset == 60
        assert log.offset_for_timestamp(5058) == 58


def test_empty_partitions_cost_no_segment_files(mgr):
    mgr.create_topic("many", 50)
    for p in range(50):
        d = mgr.get_log("many", p).dir
        assert not any(n.endswith(".log") for n in os.listdir(d))


def test_create_topic_applies_config_overrides_given_as_strings(mgr):
    t = mgr.create_topic("a.b_c-1", 2, {"retention.ms": "60000"})
    assert t.config.retention_ms == 60000 and len(t.partitions) == 2
    assert mgr.get_log("a.b_c-1", 1).config == t.config


def test_create_topic_twice_is_refused(mgr):
    mgr.create_topic("t")
    with pytest.raises(TopicAlreadyExistsError):
        mgr.create_topic("t")


@pytest.mark.parametrize("partitions", [0, -1, True, "2"])
def test_create_topic_with_a_bad_partition_count_is_refused(mgr, partitions):
    with pytest.raises(InvalidPartitionsError):
        mgr.create_topic("x", partitions)
    assert mgr.topics() == []


@pytest.mark.parametrize("config", [{"no_such": 1}, {"flush_policy": "sometimes"}])
def test_create_topic_with_a_bad_config_is_refused(mgr, config):
    with pytest.raises(InvalidConfigError):
        mgr.create_topic("x", 1, config)
    assert mgr.topics() == []


def test_topics_are_listed_in_name_order(mgr):
    mgr.create_topic("b")
    mgr.create_topic("__consumer_offsets", 3)
    mgr.create_topic("a.b_c-1")
    assert mgr.topics() == ["__consumer_offsets", "a.b_c-1", "b"]


def test_alter_topic_config_sets_and_resets_keys_on_every_partition(mgr):
    mgr.create_topic("t", 2, {"retention.ms": "60000"})
    cfg = mgr.alter_topic_config("t", {"segment_bytes": "1048576", "retention_ms": None})
    assert cfg.segment_bytes == 1048576 and cfg.retention_ms == TopicConfig().retention_ms
    assert [mgr.get_log("t", p).config for p in range(2)] == [cfg, cfg]


def test_alter_topic_config_with_a_bad_value_changes_nothing(mgr):
    before = mgr.create_topic("t", 1, {"segment_bytes": 4096}).config
    with pytest.raises(InvalidConfigError):
        mgr.alter_topic_config("t", {"segment_bytes": "big", "retention_ms": "5"})
    assert mgr.topic("t").config == before == mgr.get_log("t", 0).config


def test_add_partitions_grows_the_topic_and_the_new_ones_take_appends(mgr):
    mgr.create_topic("t", 2)
    mgr.add_partitions("t", 4)
    assert len(mgr.topic("t").partitions) == 4
    assert mgr.get_log("t", 3).append(make_batch()).base_offset == 0
    with pytest.raises(UnknownTopicOrPartitionError):
        mgr.get_log("t", 4)


@pytest.mark.parametrize("total", [2, 1, True])
def test_add_partitions_must_grow_the_topic(mgr, total):
    mgr.create_topic("t", 2)
    with pytest.raises(InvalidPartitionsError):
        mgr.add_partitions("t", total)
    assert len(mgr.topic("t").partitions) == 2


def test_delete_topic_removes_its_data_and_its_name(mgr):
    mgr.create_topic("t", 2)
    log = mgr.get_log("t", 1)
    log.append(make_batch())
    mgr.delete_topic("t")
    assert mgr.topics() == []
    assert not (mgr.data_dir / "t-1").exists()
    with pytest.raises(UnknownTopicOrPartitionError):
        mgr.get_log("t", 0)
    with pytest.raises(UnknownTopicOrPartitionError):  # a caller still holding the log
        log.read(0)
    with pytest.raises(UnknownTopicOrPartitionError):
        log.append(make_batch())


def test_delete_of_an_unknown_topic_is_refused(mgr):
    with pytest.raises(UnknownTopicOrPartitionError):
        mgr.delete_topic("nope")


def test_admin_state_survives_reopen(tmp_path):
    with LogManager.open(tmp_path) as m:
        m.create_topic("t", 2, {"segment_bytes": 4096})
        m.add_partitions("t", 3)
        m.alter_topic_config("t", {"flush_policy": "every_batch"})
    with LogManager.open(tmp_path) as m:
        t = m.topic("t")
        assert len(t.partitions) == 3
        assert t.config.segment_bytes == 4096 and t.config.flush_policy == "every_batch"


@pytest.mark.parametrize("name", ["", ".", "..", "a b", "ü", "x" * 250, "a/b", "a\n"])
def test_bad_topic_names(name):
    with pytest.raises(InvalidTopicError):
        validate_topic_name(name)


def test_topic_config_parses_cli_strings():
    cfg = TopicConfig.from_dict({"max_batch_bytes": "1048576", "segment.ms": "60000"})
    assert cfg.max_batch_bytes == 1048576 and cfg.segment_ms == 60000
    assert TopicConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InvalidConfigError):
        TopicConfig.from_dict({"segment_bytes": 10})


def test_data_dir_is_locked(tmp_path):
    with LogManager.open(tmp_path), pytest.raises(KafkaStorageError, match="in use"):
        LogManager.open(tmp_path)


def test_flush_policies_move_flushed_offset(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as m:
        m.create_topic("every", 1, {"flush_policy": "every_batch"})
        m.create_topic("interval", 1, {"flush_policy": "interval", "flush_interval_ms": 500})
        m.create_topic("never", 1, {"flush_policy": "never"})
        for name in ("every", "interval", "never"):
            m.get_log(name, 0).append(make_batch(2))
        assert m.get_log("every", 0).flushed_offset == 2
        assert m.get_log("interval", 0).flushed_offset == 0
        assert m.flush_due() == 0
        clock.advance(500)
        assert m.flush_due() == 1
        assert m.get_log("interval", 0).flushed_offset == 2
        never = m.get_log("never", 0)
        assert never.flushed_offset == 0
        assert never.flush() == 2 and never.flushed_offset == 2


def test_flush_failure_fails_the_partition(tmp_path, file_ops):
    with LogManager.open(tmp_path) as m:
        m.create_topic("t", 1, {"flush_policy": "every_batch"})
        log = m.get_log("t", 0)
        log.append(make_batch())
        file_ops.fail["msync"] = eio()
        with pytest.raises(KafkaStorageError):
            log.append(make_batch())
        del file_ops.fail["msync"]
        with pytest.raises(KafkaStorageError, match="failed earlier"):
            log.append(make_batch())
        assert log.failed
        # Reads still work. The batch whose flush failed was appended (maybe not on disk):
        # the producer got an error, so it may retry and a consumer may see it twice.
        assert offsets_of(log.read(0, 10**6))[:1] == [0]


def test_a_flush_racing_a_failed_msync_does_not_claim_durability(tmp_path, file_ops):
    """Linux reports a writeback error to one msync only. If flush A's msync fails and, before
    A marks the partition failed, flush B's msync runs and finds nothing to report, B must
    not advance flushed_offset over the lost pages: the segment keeps the first failure."""
    with LogManager.open(tmp_path) as m:
        m.create_topic("t", 1)  # interval flush policy: flush() runs outside the lock
        log = m.get_log("t", 0)
        log.append(make_batch())
        file_ops.fail["msync"] = eio()
        segment = log.segments()[-1]
        with pytest.raises(OSError):
            segment.flush()  # flush A's msync, before A has failed the partition
        del file_ops.fail["msync"]  # the kernel reported the error once and forgot it
        assert not log.failed and log.flushed_offset == 0
        with pytest.raises(KafkaStorageError):
            log.flush()  # flush B: the later msync would succeed, but the pages are lost
        assert log.flushed_offset == 0 and log.failed
        assert len(file_ops.calls["msync"]) == 1  # B did not even try


def test_log_append_time(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as m:
        m.create_topic("t", 1, {"timestamp_type": "log_append"})
        log = m.get_log("t", 0)
        r = log.append(make_batch(3, ts=5))
        assert r.log_append_time_ms == clock.now_ms()
        batch = decode_batch(log.read(0))  # CRC still valid
        assert int(batch.timestamps[0]) == clock.now_ms()
        assert log.offset_for_timestamp(clock.now_ms()) == 0


def test_partition_log_embedded_without_manager(tmp_path):
    log = PartitionLog(tmp_path / "p", topic="t", partition=0)
    log.append(make_batch(2))
    assert log.close()
    again = PartitionLog(tmp_path / "p", topic="t", partition=0, clean_shutdown=True)
    assert again.log_end_offset == 2
    again.close()
