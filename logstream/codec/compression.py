"""Compression codecs for a batch's record section, selected by attribute bits 0-2.

0 none, 1 zstd (``zstandard``), 2 lz4 (``lz4.frame``). The whole record section (the four
length columns and the three byte runs) is compressed as one frame, so decoding stays
columnar after one decompress call.
"""

from __future__ import annotations

from logstream.errors import CorruptRecordError, InvalidBatchError

NONE = 0
ZSTD = 1
LZ4 = 2
KNOWN = frozenset({NONE, ZSTD, LZ4})
NAMES = {"none": NONE, "zstd": ZSTD, "lz4": LZ4}


def by_name(name: str | None) -> int:
    """Codec id for a user-facing name (``None`` means no compression)."""
    if name is None:
        return NONE
    try:
        return NAMES[name.lower()]
    except KeyError:
        raise InvalidBatchError(
            f"unknown compression {name!r}; choose one of {', '.join(NAMES)}"
        ) from None


def compress(codec: int, data: bytes) -> bytes:
    if codec == NONE:
        return data
    if codec == ZSTD:
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    if codec == LZ4:
        import lz4.frame

        return bytes(lz4.frame.compress(data))
    raise InvalidBatchError(f"unknown compression codec {codec}")


def decompress(codec: int, data: bytes | memoryview, expected_size: int) -> bytes:
    """Decompress, refusing output larger than ``expected_size`` (a decompression bomb or a
    lying header is an error, not an allocation)."""
    try:
        if codec == ZSTD:
            import zstandard

            return bytes(
                zstandard.ZstdDecompressor().decompress(
                    bytes(data), max_output_size=max(expected_size, 1)
                )
            )
        if codec == LZ4:
            import lz4.frame

            out = lz4.frame.decompress(bytes(data))
            if len(out) != expected_size:
                raise CorruptRecordError("lz4 section has the wrong decompressed size")
            return bytes(out)
    except CorruptRecordError:
        raise
    except Exception as exc:  # the libraries raise their own error types
        raise CorruptRecordError(f"cannot decompress record section: {exc}") from exc
    raise InvalidBatchError(f"unknown compression codec {codec}")
