"""The producer-id store: bounded names, one small append per call (no rewrite of the whole
state), ids never reused across restarts, damage refused loudly, expiry and a cap on names.
Plus the broker-level file modes (data dir 0700, files 0600) on a real broker process."""

from __future__ import annotations

import json
import os
import stat

import pytest
from broker_helpers import Client

from logstream.broker.producer_ids import (
    COMPACT_MIN_RECORDS,
    FILE_NAME,
    LEGACY_FILE_NAME,
    MAX_PRODUCER_NAME_BYTES,
    ProducerIdManager,
)
from logstream.errors import InvalidProducerNameError, KafkaStorageError
from logstream.protocol import log_pb2
from logstream.testing.broker import BrokerProcess
from logstream.testing.clock import ManualClock


def _name(i: int) -> str:
    return f"{i:06d}".ljust(MAX_PRODUCER_NAME_BYTES, "n")


def test_a_call_appends_one_record_and_rewrites_nothing(tmp_path):
    ids = ProducerIdManager(tmp_path)
    for i in range(300):
        ids.allocate(_name(i))
    path = tmp_path / FILE_NAME
    before = os.stat(path)
    assert ids.allocate(_name(7)) == (7, 1)
    after = os.stat(path)
    assert after.st_ino == before.st_ino  # the same file, appended to
    assert 0 < after.st_size - before.st_size < 2 * MAX_PRODUCER_NAME_BYTES
    ids.close()


def test_ids_and_epochs_survive_a_restart_and_are_never_reused(tmp_path):
    ids = ProducerIdManager(tmp_path)
    handed = {ids.allocate(), ids.allocate("a"), ids.allocate(), ids.allocate("a")}
    assert handed == {(0, 0), (1, 0), (2, 0), (1, 1)}
    ids.close()  # no clean shutdown needed: every record is durable when answered
    again = ProducerIdManager(tmp_path)
    assert again.allocate("a") == (1, 2)
    assert again.allocate() == (3, 0)
    again.close()


def test_names_are_limited(tmp_path):
    ids = ProducerIdManager(tmp_path)
    ids.allocate("é" * (MAX_PRODUCER_NAME_BYTES // 2))
    for name in ("x" * (MAX_PRODUCER_NAME_BYTES + 1), "é" * 128, "x" * 100_000):
        with pytest.raises(InvalidProducerNameError):
            ids.allocate(name)
    ids.close()


def test_compaction_keeps_the_state_and_bounds_the_file(tmp_path):
    ids = ProducerIdManager(tmp_path)
    for _ in range(3 * COMPACT_MIN_RECORDS):
        ids.allocate("restarts-a-lot")
    ids.allocate()
    size = (tmp_path / FILE_NAME).stat().st_size
    assert size < (COMPACT_MIN_RECORDS + 10) * (32 + len("restarts-a-lot"))
    ids.close()
    again = ProducerIdManager(tmp_path)
    assert again.allocate("restarts-a-lot") == (0, 3 * COMPACT_MIN_RECORDS)
    assert again.allocate() == (2, 0)
    again.close()


def test_a_torn_last_record_is_cut_and_the_rest_kept(tmp_path):
    ids = ProducerIdManager(tmp_path)
    ids.allocate("a")
    ids.allocate("b")
    ids.close()
    path = tmp_path / FILE_NAME
    with open(path, "ab") as f:  # a crash during an append: half a record
        f.write(b"\x01\x02\x03\x04\x05\x06\x07")
    again = ProducerIdManager(tmp_path)
    assert again.allocate("b") == (1, 1) and again.allocate() == (2, 0)
    again.close()


def test_damage_before_the_last_record_refuses_to_start_and_names_the_file(tmp_path):
    ids = ProducerIdManager(tmp_path)
    for name in "abcd":
        ids.allocate(name)
    ids.close()
    path = tmp_path / FILE_NAME
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # inside the first record
    path.write_bytes(bytes(data))
    with pytest.raises(KafkaStorageError) as info:
        ProducerIdManager(tmp_path)
    assert FILE_NAME in str(info.value)


def test_unused_names_expire_and_the_count_is_capped(tmp_path):
    clock = ManualClock(1_000_000)
    ids = ProducerIdManager(tmp_path, clock=clock, expiration_ms=60_000, max_names=3)
    assert ids.allocate("old") == (0, 0)
    clock.advance(61_000)
    for name in "abc":
        ids.allocate(name)
    assert ids.named_count == 3  # "old" expired
    assert ids.allocate("old") == (4, 0)  # forgotten: a fresh id
    assert ids.named_count == 3  # and "a", the least recently used, made room
    assert ids.allocate("a") == (5, 0)
    ids.close()
    again = ProducerIdManager(tmp_path, clock=clock, expiration_ms=60_000, max_names=3)
    assert again.named_count == 3 and again.allocate("c") == (3, 1)
    again.close()


def test_the_json_file_of_older_versions_is_taken_over(tmp_path):
    legacy = tmp_path / LEGACY_FILE_NAME
    legacy.write_text(json.dumps({"version": 1, "next_id": 9, "named": {"w": [4, 2]}}))
    ids = ProducerIdManager(tmp_path)
    assert ids.allocate("w") == (4, 3) and ids.allocate() == (9, 0)
    assert not legacy.exists()
    ids.close()


def test_a_broker_keeps_its_data_private(tmp_path):
    old = os.umask(0)
    try:
        data = tmp_path / "data"
        with BrokerProcess(data, file_mode=0o640) as broker:
            client = Client(broker.address)
            try:
                client.create_topic("t")
                client.log.InitProducerId(log_pb2.InitProducerIdRequest(producer_name="p"))
            finally:
                client.close()
            modes = {
                p.relative_to(data).as_posix(): stat.S_IMODE(p.stat().st_mode)
                for p in [data, *data.rglob("*")]
            }
    finally:
        os.umask(old)
    assert modes["."] == 0o700 and modes["meta"] == 0o700 and modes["t-0"] == 0o700
    assert modes[FILE_NAME] == 0o640 and modes["meta/t.json"] == 0o640
    assert modes[".lock"] == 0o640
