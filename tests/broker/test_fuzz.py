"""Seeded fuzzing of a real broker process with hostile requests.

About 300 requests (random and mutated produce batches, absurd partitions and topic names,
extreme fetch and list-offsets parameters, bad admin calls), bounded in count and time.
Afterwards the broker must still serve; every answer must be a success or a named error (a
gRPC status with ``logstream-error-code``, or a per-item ``error_code``), never UNKNOWN,
INTERNAL or UNKNOWN_SERVER_ERROR; a clean stop must leave a data dir that
``tools/verify_log.py`` accepts; and every acknowledged batch must read back unchanged
and decode.
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from broker_helpers import Client

from logstream.codec import (
    BATCH_LENGTH_POS,
    CRC_POS,
    CRC_START,
    HEADER,
    HEADER_SIZE,
    compression,
    decode_batch,
    encode_batch,
    read_header,
)
from logstream.codec.crc import crc32c
from logstream.errors import UnknownServerError
from logstream.protocol import admin_pb2, common_pb2, log_pb2
from logstream.protocol.status import ERROR_CODE_KEY
from logstream.testing.broker import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]
SEED = 20240607
REQUESTS = 300
I32_MAX, I32_MIN = 2**31 - 1, -(2**31)
I64_MAX, I64_MIN = 2**63 - 1, -(2**63)
TOPICS = {"fz-a": 3, "fz-b": 1}
"""Topics whose acknowledged batches are tracked (never deleted by the fuzzer)."""

pytestmark = pytest.mark.slow


def _recrc(buf: bytearray) -> bytes:
    """Fix the CRC so a mutation gets past the checksum and tests the rules behind it."""
    if len(buf) >= HEADER_SIZE:
        struct.pack_into("<I", buf, CRC_POS, crc32c(memoryview(buf)[CRC_START:]))
    return bytes(buf)


def _set_field(batch: bytes, index: int, value: int) -> bytes:
    """Rewrite header field ``index`` (HEADER order) and fix the CRC."""
    fields = list(HEADER.unpack_from(batch, 0))
    fields[index] = value
    buf = bytearray(batch)
    HEADER.pack_into(buf, 0, *fields)
    return _recrc(buf)


class Fuzzer:
    def __init__(self, client: Client, rng: random.Random) -> None:
        self.c = client
        self.rng = rng
        self.acked: list[tuple[str, int, int, bytes]] = []  # topic, partition, base, batch
        self.problems: list[str] = []
        self.calls = 0
        self.next_pid = 10_000

    # -- inputs ------------------------------------------------------------------------------

    def valid_batch(self) -> bytes:
        r = self.rng
        n = r.choice([1, 1, 2, 5, 50])
        values = [r.randbytes(r.randint(0, 40)) if r.random() < 0.9 else None for _ in range(n)]
        keys = [r.randbytes(r.randint(0, 8)) for _ in range(n)] if r.random() < 0.5 else None
        ts0 = r.choice([0, 1, 1_700_000_000_000, 2**40, -5])
        return encode_batch(
            values,
            keys=keys,
            timestamps=[ts0 + r.randint(0, 1000) for _ in range(n)],
            compression_type=r.choice([compression.NONE, compression.ZSTD, compression.LZ4]),
        )

    def bad_batch(self) -> bytes:
        r = self.rng
        b = self.valid_batch()
        kind = r.randrange(14)
        if kind == 0:  # flip bytes anywhere
            buf = bytearray(b)
            for _ in range(r.randint(1, 4)):
                buf[r.randrange(len(buf))] ^= 1 << r.randrange(8)
            return bytes(buf)
        if kind == 1:  # lying length, CRC fixed
            return _set_field(
                b, 1, r.choice([0, 1, 71, 72, len(b) - 1, len(b) + 1, I32_MAX, I32_MIN, -1])
            )
        if kind == 2:  # lying length, CRC not fixed
            buf = bytearray(b)
            struct.pack_into("<i", buf, BATCH_LENGTH_POS, r.choice([len(b) * 2, 12, -72]))
            return bytes(buf)
        if kind == 3:  # huge / zero / negative record count, CRC fixed
            return _set_field(b, 5, r.choice([0, -1, I32_MAX, I32_MIN, 2**20, 2**31 - 2]))
        if kind == 4:  # a compressed section that decompresses to something else
            other = compression.compress(
                r.choice([compression.ZSTD, compression.LZ4]), r.randbytes(r.randint(0, 300))
            )
            h = read_header(b)
            buf = bytearray(b[:HEADER_SIZE] + other)
            fields = list(h)
            fields[1] = len(buf)
            fields[4] = (h.attributes & ~7) | r.choice([compression.ZSTD, compression.LZ4])
            fields[14] = len(other)
            HEADER.pack_into(buf, 0, *fields)
            return _recrc(buf)
        if kind == 5:  # unknown compression codec / magic
            if r.random() < 0.5:
                return _set_field(b, 4, r.choice([3, 7, 0xFFFF]))
            return _set_field(b, 2, r.choice([0, 2, 255]))
        if kind == 6:  # extreme timestamps
            if r.random() < 0.5:
                return _set_field(b, 7, I64_MAX)
            return _set_field(b, 6, I64_MAX)
        if kind == 7:  # truncated
            return b[: r.randrange(len(b))]
        if kind == 8:  # trailing garbage
            return b + r.randbytes(r.randint(1, 100))
        if kind == 9:  # random bytes
            return r.randbytes(r.randint(0, 300))
        if kind == 10:  # negative section lengths
            return _set_field(b, r.choice([11, 12, 13]), r.choice([-1, I32_MIN, I32_MAX]))
        if kind == 11:  # producer fields at their limits
            return _set_field(
                _set_field(
                    _set_field(b, 8, r.choice([0, I64_MAX, -2])), 9, r.choice([-1, 0, 32767])
                ),
                10,
                r.choice([I32_MAX, I32_MAX - 1, -7]),
            )
        if kind == 12:  # records_length lies
            return _set_field(b, 14, r.choice([0, -1, I32_MAX]))
        return b"\0" * r.choice([0, 1, 11, 12, 72, 200])

    def idempotent_batches(self) -> list[bytes]:
        """A producer's run of batches, near the sequence wrap-around."""
        r = self.rng
        pid = self.next_pid
        self.next_pid += 1
        seq = r.choice([0, I32_MAX - 3, I32_MAX])
        out = []
        for _ in range(r.randint(1, 4)):
            n = r.randint(1, 3)
            out.append(
                encode_batch(
                    [b"i%d" % seq] * n, producer_id=pid, producer_epoch=0, base_sequence=seq
                )
            )
            seq = (seq + n) % (I32_MAX + 1)
        if r.random() < 0.3:
            out.append(out[-1])  # a retry: a duplicate
        return out

    def topic_name(self) -> str:
        return self.rng.choice(
            [
                *TOPICS,
                *TOPICS,
                "",
                "ü-topic",
                "..",
                ".",
                "a" * 300,
                "../etc",
                "a/b",
                "\x00",
                "nope-" + str(self.rng.randrange(3)),
                "__consumer_offsets",
                " ",
                "日本",
            ]
        )

    def partition(self, topic: str) -> int:
        r = self.rng
        if topic in TOPICS and r.random() < 0.7:
            return r.randrange(TOPICS[topic])
        return r.choice([-1, I32_MIN, I32_MAX, 3, 1000])

    # -- calls -------------------------------------------------------------------------------

    def call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        self.calls += 1
        try:
            return fn(*args, timeout=10, **kw)
        except grpc.RpcError as exc:
            code = exc.code()
            named = any(k == ERROR_CODE_KEY for k, _ in exc.trailing_metadata() or ())
            if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL) or not (
                named or code == grpc.StatusCode.RESOURCE_EXHAUSTED
            ):
                self.problems.append(f"{what}: {code} {exc.details()}")
            elif any(
                k == ERROR_CODE_KEY and int(v) == UnknownServerError.code
                for k, v in exc.trailing_metadata() or ()
            ):
                self.problems.append(f"{what}: UNKNOWN_SERVER_ERROR {exc.details()}")
            return None

    def item(self, what: str, code: int, message: str) -> None:
        if code == UnknownServerError.code:
            self.problems.append(f"{what}: UNKNOWN_SERVER_ERROR {message}")

    def produce(self) -> None:
        r = self.rng
        parts = []
        for _ in range(r.choice([1, 1, 1, 2, 3, 200])):
            topic = self.topic_name()
            roll = r.random()
            if roll < 0.35:
                batches = [self.valid_batch() for _ in range(r.randint(1, 3))]
            elif roll < 0.5:
                batches = self.idempotent_batches()
            elif roll < 0.9:
                batches = [self.bad_batch() for _ in range(r.randint(1, 2))]
                if r.random() < 0.5:
                    batches.insert(0, self.valid_batch())
            else:
                batches = []
            parts.append(
                log_pb2.PartitionProduceData(
                    topic=topic, partition=self.partition(topic), batches=batches
                )
            )
        if r.random() < 0.2 and parts:  # the same partition twice in one request
            parts.append(parts[0])
        acks = r.choice(
            [
                common_pb2.ACKS_LEADER,
                common_pb2.ACKS_FLUSHED,
                common_pb2.ACKS_NONE,
                common_pb2.ACKS_UNSPECIFIED,
                7,
                -1,
            ]
        )
        req = log_pb2.ProduceRequest(
            acks=acks, timeout_ms=r.choice([0, 1, 5000, I32_MAX, -1]), partitions=parts
        )
        resp = self.call("Produce", self.c.log.Produce, req)
        if resp is None:
            return
        if len(resp.partitions) != len(parts):
            self.problems.append(f"Produce: {len(parts)} partitions in, {len(resp.partitions)} out")
            return
        for data, part in zip(parts, resp.partitions, strict=True):
            self.item("Produce", part.error_code, part.error_message)
            if part.error_code:
                continue
            if len(part.results) != len(data.batches):
                self.problems.append(f"Produce: {len(data.batches)} batches, {len(part.results)}")
                continue
            for batch, res in zip(data.batches, part.results, strict=True):
                self.item("Produce batch", res.error_code, res.error_message)
                if res.error_code == 0 and not res.duplicate:
                    self.acked.append((data.topic, data.partition, res.base_offset, batch))

    def fetch(self) -> None:
        r = self.rng
        parts = []
        for _ in range(r.choice([1, 1, 2, 3, 300])):
            topic = self.topic_name()
            parts.append(
                log_pb2.FetchPartition(
                    topic=topic,
                    partition=self.partition(topic),
                    offset=r.choice([0, 0, 1, 5, -1, I64_MAX, I64_MIN, 2**40]),
                    max_bytes=r.choice([0, 1, 72, 1000, I32_MAX, -1, I32_MIN]),
                )
            )
        if r.random() < 0.2:
            parts.append(parts[0])
        req = log_pb2.FetchRequest(
            partitions=parts,
            max_wait_ms=r.choice([0, 0, 1, 20, -1, I32_MIN]),
            min_bytes=r.choice([0, 1, I32_MAX, -1, 10**6]),
            max_bytes=r.choice([0, 1, 100, I32_MAX, -1]),
        )
        resp = self.call("Fetch", self.c.log.Fetch, req)
        if resp is not None:
            for p in resp.partitions:
                self.item("Fetch", p.error_code, p.error_message)

    def list_offsets(self) -> None:
        r = self.rng
        parts = []
        for _ in range(r.choice([1, 2, 100])):
            topic = self.topic_name()
            parts.append(
                log_pb2.ListOffsetsPartition(
                    topic=topic,
                    partition=self.partition(topic),
                    timestamp=r.choice([-1, -2, -3, 0, I64_MAX, I64_MIN, 1_700_000_000_500]),
                )
            )
        resp = self.call(
            "ListOffsets", self.c.log.ListOffsets, log_pb2.ListOffsetsRequest(partitions=parts)
        )
        if resp is not None:
            for p in resp.partitions:
                self.item("ListOffsets", p.error_code, p.error_message)

    def admin(self) -> None:
        r = self.rng
        name = r.choice(["", "ü", "..", "a" * 300, "fz-scratch", "fz-a", "x/y", "fz-scratch2"])
        kind = r.randrange(5)
        a = self.c.admin
        if kind == 0:
            spec = admin_pb2.TopicSpec(
                name=name,
                partitions=r.choice([0, 1, 2, -1, I32_MAX, 100_001]),
                config=r.choice(
                    [
                        {},
                        {"retention.ms": "x"},
                        {"bogus": "1"},
                        {"segment_bytes": "-5"},
                        {"flush_policy": "sometimes"},
                        {"max_batch_bytes": str(I64_MAX)},
                        {"segment_bytes": "0"},
                    ]
                ),
            )
            resp = self.call(
                "CreateTopics",
                a.CreateTopics,
                admin_pb2.CreateTopicsRequest(topics=[spec, spec], validate_only=r.random() < 0.3),
            )
            for t in resp.topics if resp is not None else ():
                self.item("CreateTopics", t.error_code, t.error_message)
        elif kind == 1 and name not in TOPICS:
            resp = self.call(
                "DeleteTopics", a.DeleteTopics, admin_pb2.DeleteTopicsRequest(names=[name, name])
            )
            for t in resp.topics if resp is not None else ():
                self.item("DeleteTopics", t.error_code, t.error_message)
        elif kind == 2:
            resp = self.call(
                "CreatePartitions",
                a.CreatePartitions,
                admin_pb2.CreatePartitionsRequest(
                    name=name if name not in TOPICS else "fz-scratch",
                    total_count=r.choice([-1, 0, 2, I32_MAX, 100_001]),
                ),
            )
            if resp is not None:
                self.item("CreatePartitions", resp.result.error_code, resp.result.error_message)
        elif kind == 3:
            resp = self.call(
                "AlterTopicConfig",
                a.AlterTopicConfig,
                admin_pb2.AlterTopicConfigRequest(
                    name=name if name not in TOPICS else "fz-scratch",
                    set=r.choice(
                        [{"retention_ms": "-7"}, {"nope": "1"}, {"segment_ms": "abc"}, {}]
                    ),
                    reset=r.choice([[], ["nope"], ["retention_ms"]]),
                ),
            )
            if resp is not None:
                self.item("AlterTopicConfig", resp.result.error_code, resp.result.error_message)
        else:
            resp = self.call(
                "DescribeTopics",
                a.DescribeTopics,
                admin_pb2.DescribeTopicsRequest(names=[name, "", "zz"]),
            )
            for t in resp.topics if resp is not None else ():
                self.item("DescribeTopics", t.error_code, t.error_message)

    def run(self, count: int, budget_s: float) -> None:
        deadline = time.monotonic() + budget_s
        actions = [self.produce] * 5 + [self.fetch] * 3 + [self.list_offsets, self.admin]
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            self.rng.choice(actions)()


def test_fuzzed_requests_never_crash_or_damage_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = {
        "auto_create_topics": True,
        "topic_defaults": {"segment_bytes": 16 * 1024, "max_batch_bytes": 16 * 1024},
    }
    with BrokerProcess(data, **config) as proc:
        client = Client(proc.address)
        try:
            for name, count in TOPICS.items():
                assert client.create_topic(name, partitions=count).error_code == 0
            fuzzer = Fuzzer(client, random.Random(SEED))
            started = time.monotonic()
            fuzzer.run(REQUESTS, budget_s=18)
            elapsed = time.monotonic() - started
            assert fuzzer.calls >= REQUESTS * 0.9, f"only {fuzzer.calls} calls in {elapsed:.1f}s"
            assert not fuzzer.problems, "\n".join(fuzzer.problems[:20])
            assert fuzzer.acked, "the fuzzer should get some batches acknowledged"
            client.assert_serving()
        finally:
            client.close()
        assert proc.terminate() == 0
    output = proc.output()
    assert "Traceback" not in output and "unexpectedly" not in output, output[-4000:]

    verify = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "verify_log.py"), str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    with BrokerProcess(data, **config) as proc:
        client = Client(proc.address)
        try:
            for topic, partition, base, batch in fuzzer.acked:
                got = client.fetch(topic, partition, base, max_bytes=1)
                assert got.error_code == 0, (topic, partition, base, got.error_message)
                first = got.records[: read_header(got.records).batch_length]
                assert read_header(first).base_offset == base
                # Identical except the stamped base offset (outside the CRC).
                assert first[8:] == batch[8:], (topic, partition, base)
                # ... and decodable: a stored batch no consumer can decode is a poison pill.
                assert len(decode_batch(first)) == read_header(batch).record_count
        finally:
            client.close()
