"""Offset lookups for a consumer: ListOffsets by time or EARLIEST/LATEST, and resolving a
partition without a position per ``auto_offset_reset``. Called from the application thread
(``seek_to_*``, ``position``) and from the fetcher (resets); stateless apart from the
:class:`~logstream.client.subscription.SubscriptionState` it writes resolved positions to.
"""

from __future__ import annotations

from logstream import errors
from logstream.client.subscription import SubscriptionState
from logstream.client.transport_api import TransportLike
from logstream.protocol import log_pb2
from logstream.protocol.status import error_for_code
from logstream.types import TopicPartition


class OffsetLookup:
    """ListOffsets for one consumer. Thread-safe (each call is one independent RPC)."""

    def __init__(
        self, state: SubscriptionState, transport: TransportLike, *, timeout: float
    ) -> None:
        self._state = state
        self._transport = transport
        self._timeout = timeout

    def list_offsets(self, specs: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """ListOffsets for ``specs`` (EARLIEST, LATEST from logstream.types, or a timestamp
        per partition)."""
        if not specs:
            return {}
        req = log_pb2.ListOffsetsRequest(
            partitions=[
                log_pb2.ListOffsetsPartition(topic=tp.topic, partition=tp.partition, timestamp=ts)
                for tp, ts in specs.items()
            ]
        )
        resp = self._transport.list_offsets(req, timeout=self._timeout)
        out: dict[TopicPartition, int] = {}
        for p in resp.partitions:
            tp = TopicPartition(p.topic, p.partition)
            if p.error_code:
                raise error_for_code(p.error_code, p.error_message or str(tp))
            out[tp] = p.offset
        missing = [tp for tp in specs if tp not in out]
        if missing:
            raise errors.UnknownServerError(f"no offsets returned for {missing}")
        return out

    def resolve_reset(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Positions for partitions without one, per ``auto_offset_reset``."""
        reset = self._state.reset
        if reset is None:
            raise errors.OffsetOutOfRangeError(
                f"no position for {', '.join(map(str, tps))} and auto_offset_reset='error'; "
                "seek() first"
            )
        epochs = self._state.epochs_of(tps)
        try:
            found = self.list_offsets({tp: reset for tp in tps})
        except errors.UnknownTopicOrPartitionError:
            if len(tps) == 1:
                raise
            # One missing topic fails the whole lookup: the others get their positions
            # one by one (only on this error path), then the first missing one is raised.
            found, missing = {}, None
            for tp in tps:
                try:
                    found.update(self.list_offsets({tp: reset}))
                except errors.UnknownTopicOrPartitionError as exc:
                    missing = missing or exc
            self._state.apply_reset(found, epochs)
            if missing is not None:
                raise missing from None
        return self._state.apply_reset(found, epochs)
