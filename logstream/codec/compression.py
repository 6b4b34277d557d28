"""Compression codecs for a batch's record section, selected by attribute bits 0-2.

0 none, 1 zstd (``zstandard``), 2 lz4 (``lz4.frame``). The whole record section (the four
length columns and the three byte runs) is compressed as one frame, so decoding stays
columnar after one decompress call.

:func:`decompress` is the one way in, for the broker's append check and the consumer's
decode alike: the caller passes the size the batch header declares, and output beyond it is
refused while decompressing (a decompression bomb or a lying header is an error, never an
allocation of the inflated size). Stateless and thread-safe.
"""

from __future__ import annotations

from typing import Final

from logstream.errors import CorruptRecordError, InvalidBatchError

NONE: Final = 0
ZSTD: Final = 1
LZ4: Final = 2
KNOWN: Final = frozenset({NONE, ZSTD, LZ4})
NAMES: Final = {"none": NONE, "zstd": ZSTD, "lz4": LZ4}


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
    """``data`` as one frame of ``codec`` (``data`` itself for NONE)."""
    if codec == NONE:
        return data
    if codec == ZSTD:
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    if codec == LZ4:
        import lz4.frame

        return bytes(lz4.frame.compress(data))
    raise InvalidBatchError(f"unknown compression codec {codec}")


def decompress(codec: int, data: bytes | bytearray | memoryview, expected_size: int) -> bytes:
    """Decompress one frame that must inflate to exactly ``expected_size`` bytes.

    Never produces more than ``expected_size + 1`` bytes: zstd is capped by
    ``max_output_size``, lz4 by the streaming decompressor's ``max_length``. A size written in
    the frame header that disagrees is refused before decompressing. Raises InvalidBatchError
    when the sizes disagree (intact bytes, wrong claim) and CorruptRecordError when the frame
    cannot be decompressed at all.
    """
    if expected_size < 0:
        raise InvalidBatchError(f"negative uncompressed size {expected_size}")
    try:
        if codec == ZSTD:
            out = _zstd(data, expected_size)
        elif codec == LZ4:
            out = _lz4(data, expected_size)
        else:
            raise InvalidBatchError(f"unknown compression codec {codec}")
    except (InvalidBatchError, CorruptRecordError):
        raise
    except Exception as exc:  # the libraries raise their own error types
        raise CorruptRecordError(f"cannot decompress the record section: {exc}") from exc
    if len(out) != expected_size:
        raise InvalidBatchError(
            f"record section decompresses to {len(out)} bytes, the header says {expected_size}"
        )
    return out


def _zstd(data: bytes | bytearray | memoryview, expected_size: int) -> bytes:
    import zstandard

    declared = zstandard.frame_content_size(data)
    if declared not in (-1, expected_size):
        raise InvalidBatchError(f"zstd frame declares {declared} bytes, the header {expected_size}")
    # max_output_size only applies when the frame does not declare its size, and the check
    # above makes a declared size equal to expected_size: either way the output is bounded.
    return bytes(
        zstandard.ZstdDecompressor().decompress(bytes(data), max_output_size=max(expected_size, 1))
    )


def _lz4(data: bytes | bytearray | memoryview, expected_size: int) -> bytes:
    import lz4.frame

    raw = bytes(data)
    declared = lz4.frame.get_frame_info(raw).get("content_size", 0)
    if declared not in (0, expected_size):
        raise InvalidBatchError(f"lz4 frame declares {declared} bytes, the header {expected_size}")
    decompressor = lz4.frame.LZ4FrameDecompressor()
    # One byte beyond the claim is enough to tell "more than declared" from "exactly".
    out = bytes(decompressor.decompress(raw, max_length=expected_size + 1))
    if not decompressor.eof:
        raise InvalidBatchError(
            f"lz4 frame is incomplete or inflates beyond the {expected_size} bytes declared"
        )
    return out
