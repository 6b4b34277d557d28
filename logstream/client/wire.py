"""Hand-written protobuf encoding of the producer's ``ProduceRequest``.

A produce request is a few small fields around megabytes of already encoded batches.
Building a ``log_pb2.ProduceRequest`` copies every batch into the message, and gRPC's
serializer copies it all again (``SerializeToString``); together ~100 ns per 100-byte record
in the producer process, as much as ``encode_batch`` itself (docs/performance.md, Client).
:func:`produce_request` writes the same wire bytes with one ``b"".join``; the transport's
``produce_stream`` method sends them without a serializer.

The output is byte-identical to ``ProduceRequest(...).SerializeToString()`` (fields in
number order, proto3 defaults omitted); ``tests/client/test_wire.py`` checks it against the
generated code.
"""

from __future__ import annotations

from collections.abc import Sequence

from logstream.codec.varint import varint


def produce_request(
    acks: int,
    timeout_ms: int,
    correlation_id: int,
    partitions: Sequence[tuple[str, int, Sequence[bytes]]],
) -> bytes:
    """The serialized ``ProduceRequest`` for ``(topic, partition, [batch, ...])`` entries."""
    out: list[bytes] = []
    if acks:
        out += (b"\x08", varint(acks))
    if timeout_ms:
        out += (b"\x10", varint(timeout_ms))
    for topic, partition, batches in partitions:
        body: list[bytes] = []
        if topic:
            name = topic.encode()
            body += (b"\x0a", varint(len(name)), name)
        if partition:
            body += (b"\x10", varint(partition))
        for batch in batches:
            body += (b"\x1a", varint(len(batch)), batch)
        out += (b"\x1a", varint(sum(map(len, body))))
        out += body
    if correlation_id:
        out += (b"\x20", varint(correlation_id))
    return b"".join(out)
