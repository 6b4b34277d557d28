"""The producer, as aiokafka splits it: a facade over a record accumulator and a sender.

- :mod:`.producer`: :class:`Producer`, the facade (``send``, ``send_batch``, ``flush``, ``close``).
- :mod:`.accumulator`: :class:`RecordAccumulator`, open and sealed batches per partition and
  the bounded buffer.
- :mod:`.sender`: :class:`Sender`, the I/O thread (ProduceStream pipe, pipelining, retries,
  idempotent sequences, muting).
- :mod:`.futures`: :class:`RecordFuture`, :class:`BulkFuture` and the per-batch completion.
"""

from logstream.client.producer.futures import BatchResult, BulkFuture, RecordFuture
from logstream.client.producer.producer import ACKS, MAX_BATCH_BYTES, Producer, compression_by_name

__all__ = [
    "ACKS",
    "MAX_BATCH_BYTES",
    "BatchResult",
    "BulkFuture",
    "Producer",
    "RecordFuture",
    "compression_by_name",
]
