"""CRC32C (Castagnoli), the checksum of every batch.

Backed by the ``crc32c`` package (hardware SSE4.2/ARMv8 instructions where present, a
software table otherwise). A tiny pure-Python reference is kept for tests to cross-check it.
"""

from __future__ import annotations

import crc32c as _crc32c_backend

_POLY = 0x82F63B78


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C of ``data``, continuing from ``value``."""
    return int(_crc32c_backend.crc32c(data, value))


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c_reference(data: bytes | bytearray | memoryview) -> int:
    """Slow bit-by-bit reference implementation (tests only)."""
    c = 0xFFFFFFFF
    for b in bytes(data):
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
