"""The base-128 varint (protobuf's wire format, and under a zigzag map Kafka's signed
varints), for the messages written by hand around bytes that are already encoded: the
producer's ProduceRequest, the broker's FetchResponse, the Kafka listener's records."""

from __future__ import annotations

_U64 = (1 << 64) - 1


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint; a negative int32/int64 takes ten bytes of two's
    complement, as protobuf writes it."""
    if 0 <= n < 0x80:
        return bytes((n,))
    n &= _U64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
