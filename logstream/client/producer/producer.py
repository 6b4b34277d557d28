"""The Producer facade: ``send()`` appends to per-partition column lists in the
:class:`~logstream.client.producer.accumulator.RecordAccumulator`; the
:class:`~logstream.client.producer.sender.Sender` thread encodes whole batches and pipelines
them to the broker (see those modules for the data flow and the ordering story).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from logstream import errors
from logstream.client import transport as tr
from logstream.client.metadata import Metadata
from logstream.client.partitioner import Partitioner
from logstream.client.partitioner import by_name as partitioner_by_name
from logstream.client.producer.accumulator import (
    MAX_TIMESTAMP_DELTA,
    RECORD_OVERHEAD,
    RecordAccumulator,
    TopicBatches,
)
from logstream.client.producer.futures import (
    BulkFuture,
    RecordFuture,
    Segment,
    failed_future,
    new_future,
)
from logstream.client.producer.sender import Sender, SenderSettings, SenderStats, backoff_delay
from logstream.codec import HEADER_SIZE, compression, encode_headers, schedule_headers
from logstream.codec.encode import not_bytes
from logstream.protocol import common_pb2

_crc32 = zlib.crc32

ACKS = {
    "none": common_pb2.ACKS_NONE,
    "leader": common_pb2.ACKS_LEADER,
    "flushed": common_pb2.ACKS_FLUSHED,
    0: common_pb2.ACKS_NONE,
    1: common_pb2.ACKS_LEADER,
    "all": common_pb2.ACKS_FLUSHED,
}

MAX_BATCH_BYTES = 1024 * 1024
"""The broker's default limit for one encoded batch; ``batch_bytes`` must stay below it."""


class Producer:
    """Send records to topics. **Thread-safe**: any number of threads may call ``send``,
    ``send_batch`` and ``flush`` concurrently; one background sender thread (plus one stream
    reader thread) does all network I/O.

    ``send()`` never blocks on the network: it appends to an in-memory batch and returns a
    :class:`RecordFuture`. It blocks only when the bounded buffer (``buffer_bytes``) is full,
    for at most ``max_block_ms``, and then raises :class:`BufferExhaustedError`; and the first
    time it sees a topic, to fetch its partition count.
    """

    def __init__(
        self,
        bootstrap: str | tr.TransportLike,
        *,
        linger_ms: float = 5.0,
        batch_bytes: int = 512 * 1024,
        acks: str | int = "leader",
        compression: str | None = None,
        idempotence: bool | None = None,
        retries: int = 2**31 - 1,
        retry_backoff_ms: float = 100.0,
        retry_backoff_max_ms: float = 1000.0,
        delivery_timeout_ms: float = 120_000.0,
        request_timeout_ms: float = 30_000.0,
        buffer_bytes: int = 32 * 1024 * 1024,
        max_block_ms: float = 60_000.0,
        max_in_flight: int = 5,
        max_request_bytes: int = 2 * 1024 * 1024,
        partitioner: str | Partitioner = "crc32",
        producer_name: str = "",
        client_id: str = "",
        tls: bool = False,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        token: str | None = None,
    ) -> None:
        if acks not in ACKS:
            raise errors.InvalidRequiredAcksError(f"acks must be none|leader|flushed, got {acks!r}")
        if not 0 < batch_bytes <= MAX_BATCH_BYTES - HEADER_SIZE:
            raise errors.InvalidConfigError(
                f"batch_bytes must be in (0, {MAX_BATCH_BYTES - HEADER_SIZE}], got {batch_bytes}"
            )
        acks_code = ACKS[acks]
        if idempotence is None:
            idempotence = acks_code != common_pb2.ACKS_NONE
        elif idempotence and acks_code == common_pb2.ACKS_NONE:
            raise errors.InvalidConfigError("idempotence needs acks 'leader' or 'flushed'")
        self._max_record_bytes = MAX_BATCH_BYTES - HEADER_SIZE - RECORD_OVERHEAD
        self._retries = retries
        self._backoff = retry_backoff_ms / 1000.0
        self._backoff_max = retry_backoff_max_ms / 1000.0
        self._max_block = max_block_ms / 1000.0
        self._partitioner = partitioner_by_name(partitioner)
        self._hash_crc32 = self._partitioner is partitioner_by_name("crc32")
        self.client_id = client_id

        self._owns_transport = isinstance(bootstrap, str)
        self._transport = tr.connect(
            bootstrap, tr.ChannelSecurity.of(tls=tls, ca=ca, cert=cert, key=key, token=token)
        )
        request_timeout = request_timeout_ms / 1000.0
        self._metadata = Metadata(self._transport, timeout=request_timeout)
        self._acc = RecordAccumulator(
            batch_bytes=batch_bytes,
            max_record_bytes=self._max_record_bytes,
            linger_s=linger_ms / 1000.0,
            buffer_bytes=buffer_bytes,
            max_block_s=self._max_block,
            delivery_timeout_s=delivery_timeout_ms / 1000.0,
        )
        self._topics = self._acc.topics
        self._lock = self._acc.lock
        self._sender = Sender(
            self._acc,
            self._transport,
            self._metadata,
            SenderSettings(
                acks=acks_code,
                idempotent=idempotence,
                compression=compression_by_name(compression),
                retries=retries,
                backoff_s=self._backoff,
                backoff_max_s=self._backoff_max,
                request_timeout_s=request_timeout,
                max_in_flight=max(1, max_in_flight),
                max_request_bytes=max_request_bytes,
                producer_name=producer_name,
            ),
        )
        self._closed = False
        self._sender.start()

    # -- public API ---------------------------------------------------------------------------

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        delay_ms: int | None = None,
        deliver_at_ms: int | None = None,
        ttl_ms: int | None = None,
    ) -> RecordFuture:
        """Queue one record; return a future of its :class:`RecordMetadata`.

        Same key -> same partition (``partitioner``); no key -> the topic's sticky partition.
        Errors of the record (unknown topic, too large, delivery timeout) arrive through the
        future; ``send`` itself raises only ``ClientClosedError``, ``BufferExhaustedError``,
        ``InvalidScheduleError`` (a ``ValueError``) and ``TypeError`` (a key/header not bytes).

        Scheduling (for queue groups; docs/queues.md): ``delay_ms`` (0 to 7 days) or
        ``deliver_at_ms`` (epoch ms, at most 7 days ahead) holds the record back from queue
        members until then; ``ttl_ms`` makes it expire that long after now. They travel as
        the ``logstream-deliver-at`` / ``logstream-expires-at`` headers; plain consumers
        read the record at once and see the headers.
        """
        if delay_ms is not None or deliver_at_ms is not None or ttl_ms is not None:
            headers = schedule_headers(
                headers, delay_ms=delay_ms, deliver_at_ms=deliver_at_ms, ttl_ms=ttl_ms
            )
        # The hot path: every line here runs once per record (docs/performance.md).
        t = self._topics.get(topic)
        if t is None:
            t_or_err = self._topic(topic)
            if isinstance(t_or_err, BaseException):
                return failed_future(topic, -1 if partition is None else partition, t_or_err)
            t = t_or_err
        if partition is None:
            if key is None:
                partition = t.sticky
            else:
                try:
                    if self._hash_crc32:
                        partition = _crc32(key) % t.num_partitions
                    else:
                        partition = self._partitioner(key, t.num_partitions)
                except TypeError as exc:
                    raise _key_type_error(key, exc) from None
        elif not 0 <= partition < t.num_partitions:
            return self._bad_partition(t, partition)
        size = RECORD_OVERHEAD if value is None else RECORD_OVERHEAD + len(value)
        if key is not None:
            size += len(key)
        if headers or timestamp_ms is not None:
            return self._send_rich(t, partition, value, key, headers, timestamp_ms, size)
        acc = self._acc
        # acquire/release instead of ``with``: the context-manager protocol costs ~2x the
        # lock itself here (docs/performance.md, Client).
        lock = self._lock
        lock.acquire()
        try:
            if acc.buffered + size > acc.limit:
                acc.wait_for_space(size)
            b = t.open[partition]
            if b is None or b.size + size > b.fast_limit:  # no batch, full, or rich
                b = acc.batch_for(t, partition, b, size, None)
                if b is None:
                    return failed_future(topic, partition, _too_large(size))
                if b.rich:
                    return acc.append(b, value, key, None, None, size)
            index = len(b.values)
            b.values.append(value)
            if key is not None:
                if b.keys is None:
                    b.keys = [None] * index
                b.keys.append(key)
            elif b.keys is not None:
                b.keys.append(None)
            b.size += size
            acc.buffered += size
        finally:
            lock.release()
        return new_future(RecordFuture, (b.result, index))  # type: ignore[no-any-return]

    def _send_rich(
        self,
        t: TopicBatches,
        partition: int,
        value: bytes | None,
        key: bytes | None,
        headers: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None,
        timestamp_ms: int | None,
        size: int,
    ) -> RecordFuture:
        """``send`` of a record with headers and/or an explicit timestamp."""
        hblob = None
        if headers:
            hblob = encode_headers(
                list(headers.items()) if isinstance(headers, Mapping) else headers
            )
            size += len(hblob)
        acc = self._acc
        with self._lock:
            if acc.buffered + size > acc.limit:
                acc.wait_for_space(size)
            b = acc.batch_for(t, partition, t.open[partition], size, timestamp_ms)
            if b is None:
                return failed_future(t.name, partition, _too_large(size))
            return acc.append(b, value, key, timestamp_ms, hblob, size)

    def send_batch(
        self,
        topic: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None = None,
        *,
        partition: int | None = None,
        timestamps: Sequence[int] | int | None = None,
        delay_ms: int | None = None,
        deliver_at_ms: int | None = None,
        ttl_ms: int | None = None,
    ) -> BulkFuture:
        """Queue many records at once (columnar); one :class:`BulkFuture` for all of them.

        Without keys the records are appended in chunks (sticky partition, or ``partition``),
        with no per-record Python work except computing their sizes.

        ``delay_ms`` / ``deliver_at_ms`` / ``ttl_ms`` schedule every record as :meth:`send`
        does (the same due and expiry time for all, from one clock reading; out of range
        raises ``InvalidScheduleError``). Such records carry headers, so they take the
        per-record path.
        """
        scheduled = None
        if delay_ms is not None or deliver_at_ms is not None or ttl_ms is not None:
            scheduled = schedule_headers(
                None, delay_ms=delay_ms, deliver_at_ms=deliver_at_ms, ttl_ms=ttl_ms
            )
        if self._acc.closing:
            raise errors.ClientClosedError("producer is closed")
        n = len(values)
        if keys is not None and len(keys) != n:
            raise errors.InvalidRequestError(f"{len(keys)} keys for {n} values")
        t_or_err = self._topics.get(topic) or self._topic(topic)
        if isinstance(t_or_err, BaseException):
            raise t_or_err
        t = t_or_err
        if partition is not None and not 0 <= partition < t.num_partitions:
            raise errors.UnknownTopicOrPartitionError(
                f"partition {partition} of {topic!r} does not exist ({t.num_partitions} partitions)"
            )
        ts_list: list[int] | None = None
        if timestamps is not None:
            ts_list = [timestamps] * n if isinstance(timestamps, int) else list(timestamps)
            if len(ts_list) != n:
                raise errors.InvalidRequestError(f"{len(ts_list)} timestamps for {n} values")
            spread = max(ts_list) - min(ts_list) if n else 0
            if n and (spread > MAX_TIMESTAMP_DELTA or t.open_ts_conflict(ts_list)):
                return self._send_each(topic, values, keys, partition, ts_list, scheduled)
        if scheduled is not None:
            return self._send_each(topic, values, keys, partition, ts_list, scheduled)
        sizes = [RECORD_OVERHEAD + (0 if v is None else len(v)) for v in values]
        if keys is not None:
            sizes = [s + (0 if k is None else len(k)) for s, k in zip(sizes, keys, strict=True)]
        if n and max(sizes) > self._max_record_bytes:
            raise _too_large(max(sizes))
        segments: list[Segment] = []
        if keys is None or partition is not None:
            self._acc.append_many(t, partition, values, keys, ts_list, sizes, None, segments)
        else:
            by_part: dict[int, list[int]] = {}
            nparts = t.num_partitions
            hash_fn = self._partitioner
            for i, k in enumerate(keys):
                p = t.sticky if k is None else hash_fn(k, nparts)
                by_part.setdefault(p, []).append(i)
            for p, idx in by_part.items():
                self._acc.append_many(
                    t,
                    p,
                    [values[i] for i in idx],
                    [keys[i] for i in idx],
                    None if ts_list is None else [ts_list[i] for i in idx],
                    [sizes[i] for i in idx],
                    idx,
                    segments,
                )
        return BulkFuture(segments, n)

    def _send_each(
        self,
        topic: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None,
        partition: int | None,
        timestamps: list[int] | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> BulkFuture:
        """``send_batch`` record by record: timestamps too far apart for one batch, or
        records with (the same) headers."""
        futs = [
            self.send(
                topic,
                values[i],
                None if keys is None else keys[i],
                headers=headers,
                partition=partition,
                timestamp_ms=None if timestamps is None else timestamps[i],
            )
            for i in range(len(values))
        ]
        return BulkFuture([(f[0], f[1], 1, [i]) for i, f in enumerate(futs)], len(values))

    @property
    def stats(self) -> SenderStats:
        """Counters of the sender thread (e.g. how often it woke to look for work)."""
        return self._sender.stats

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued so far and wait until it is acknowledged (or failed).

        Raises ``RequestTimedOutError`` if ``timeout`` (seconds) passes first. Failures of
        individual records are reported through their futures, not here.
        """
        waiting = self._acc.seal_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for result in waiting:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not result.wait(remaining):
                raise errors.RequestTimedOutError(f"flush did not finish within {timeout} s")

    def partitions_for(self, topic: str) -> int:
        """The number of partitions of ``topic`` (cached; fetched on first use)."""
        t = self._topics.get(topic) or self._topic(topic)
        if isinstance(t, BaseException):
            raise t
        return t.num_partitions

    def close(self, timeout: float | None = None) -> None:
        """Flush (up to ``timeout`` seconds), stop the I/O threads, close the connection.

        Records still unacknowledged when the timeout passes fail with ``ClientClosedError``.
        Idempotent.
        """
        if self._closed:
            return
        try:
            self.flush(timeout)
        except errors.LogstreamError:
            pass
        for b in self._acc.close():
            b.result.complete(-1, -1, errors.ClientClosedError("producer closed before delivery"))
        self._sender.stop()
        self._closed = True
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- slow paths of send() -------------------------------------------------------------------

    def _topic(self, topic: str) -> TopicBatches | BaseException:
        """The topic's batches, after fetching its partition count (with retries)."""
        if self._acc.closing:
            raise errors.ClientClosedError("producer is closed")
        known_missing = self._metadata.unknown(topic)
        if known_missing is not None:
            return known_missing
        deadline = time.monotonic() + self._max_block
        attempt = 0
        while True:
            try:
                count = self._metadata.fetch(topic)
                break
            except errors.LogstreamError as exc:
                if not exc.retriable or attempt >= min(self._retries, 3):
                    return exc
                delay = backoff_delay(attempt, self._backoff, self._backoff_max)
                if time.monotonic() + delay > deadline:
                    return exc
                time.sleep(delay)
                attempt += 1
        return self._acc.add_topic(topic, count)

    def _bad_partition(self, t: TopicBatches, partition: int) -> RecordFuture:
        try:
            count = self._metadata.fetch(t.name)
        except errors.LogstreamError as exc:
            return failed_future(t.name, partition, exc)
        if count != t.num_partitions:
            with self._lock:
                t.grow(count)
            if 0 <= partition < count:
                return self.send(t.name, partition=partition)  # pragma: no cover - rare path
        return failed_future(
            t.name,
            partition,
            errors.UnknownTopicOrPartitionError(
                f"partition {partition} of {t.name!r} does not exist ({count} partitions)"
            ),
        )


def _key_type_error(key: object, exc: TypeError) -> TypeError:
    """A str (or other non-bytes) key, named as such; with a bytes key ``exc`` is a custom
    partitioner's own error, passed on as it was."""
    if isinstance(key, bytes | bytearray | memoryview):
        return exc
    return TypeError(not_bytes("key", key))


def compression_by_name(name: str | None) -> int:
    try:
        return compression.by_name(name)
    except errors.InvalidBatchError as exc:
        raise errors.InvalidConfigError(str(exc)) from None


def _too_large(size: int) -> errors.MessageTooLargeError:
    return errors.MessageTooLargeError(
        f"record of {size} bytes is larger than the largest batch the broker accepts "
        f"({MAX_BATCH_BYTES - HEADER_SIZE} bytes)"
    )
