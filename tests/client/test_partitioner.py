"""Key placement is a pure function of the key bytes: same across processes and versions."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import pytest

from logstream.client.partitioner import (
    by_name,
    crc32_partition,
    murmur2,
    murmur2_partition,
)
from logstream.errors import InvalidConfigError


@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
def test_murmur2_matches_kafka_java_client(key: bytes, partition: int) -> None:
    # Values from Kafka's DefaultPartitioner over 1000 partitions.
    assert murmur2_partition(key, 1000) == partition


def test_murmur2_is_signed_32_bit() -> None:
    assert murmur2(b"21") == -973932308
    assert all(-(2**31) <= murmur2(bytes([i]) * i) < 2**31 for i in range(40))


def test_crc32_placement_is_pinned() -> None:
    # Pinned values: changing the default partitioner would move existing keys.
    assert zlib.crc32(b"user-1") == 0x7E264614
    assert [crc32_partition(b"user-%d" % i, 3) for i in range(6)] == [
        crc32_partition(b"user-%d" % i, 3) for i in range(6)
    ]
    assert crc32_partition(b"user-1", 3) == 0x7E264614 % 3
    assert crc32_partition(b"user-1", 12) == 0x7E264614 % 12


def test_placement_is_stable_across_processes_with_different_hash_seeds() -> None:
    code = (
        "from logstream.client.partitioner import crc32_partition as c, murmur2_partition as m;"
        "print([c(b'k%d' % i, 7) for i in range(50)], [m(b'k%d' % i, 7) for i in range(50)])"
    )
    outs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.add(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
    assert len(outs) == 1
    here = str([crc32_partition(b"k%d" % i, 7) for i in range(50)])
    assert outs.pop().startswith(here)


def test_unknown_partitioner_name_is_a_config_error() -> None:
    with pytest.raises(InvalidConfigError):
        by_name("fnv")
    assert by_name("murmur2") is murmur2_partition

    def custom(key: bytes, n: int) -> int:
        return 0

    assert by_name(custom) is custom
