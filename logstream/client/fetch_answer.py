"""What one fetch answer (a Fetch response or a Subscribe stream message) does to the
consumer's :class:`~logstream.client.subscription.SubscriptionState`.

:func:`absorb_answer` decodes each partition's batches into chunks and queues them under the
epochs the request was made with (chunks of a partition that moved since are dropped by the
state), records high watermarks, halts a partition at stored damage (found by the consumer's
CRC or framing check, or reported by the broker as CORRUPT_MESSAGE), and raises the first
other partition error. Called by the fetcher on whichever thread reads (the prefetch thread,
or the iterating thread); it takes the state's lock only through the state's methods.
"""

from __future__ import annotations

import logging

from logstream import errors
from logstream.client.chunks import Chunk, decode_until_damage
from logstream.client.subscription import SubscriptionState
from logstream.protocol import log_pb2
from logstream.protocol.status import error_for_code
from logstream.types import TopicPartition

log = logging.getLogger("logstream.client.consumer")


def absorb_answer(
    state: SubscriptionState,
    resp: log_pb2.FetchResponse,
    epochs: dict[TopicPartition, int],
    offsets: dict[TopicPartition, int],
    *,
    verify: bool,
) -> bool:
    """Queue the batches of a fetch answer (or stream message) and advance ``offsets``;
    then raise the first partition error, if any. Returns whether the buffer is full."""
    decoded: list[tuple[TopicPartition, list[Chunk], int]] = []
    problems: list[tuple[TopicPartition, log_pb2.FetchPartitionResponse]] = []
    damaged: list[tuple[TopicPartition, errors.CorruptRecordError]] = []
    for p in resp.partitions:
        tp = TopicPartition(p.topic, p.partition)
        if tp not in epochs:
            continue
        state.record_high_watermark(tp, p.high_watermark)
        if p.error_code:
            problems.append((tp, p))
            continue
        if not p.records:
            continue
        chunks, damage = decode_until_damage(
            tp.topic,
            tp.partition,
            epochs[tp],
            p.records,
            offsets[tp],
            verify=verify,
        )
        if damage is not None:
            damaged.append((tp, damage))
        if chunks:
            next_offset = chunks[-1].base + chunks[-1].n
            offsets[tp] = next_offset
            decoded.append((tp, chunks, next_offset))
    full = state.add_chunks(decoded, epochs)
    for tp, damage in damaged:  # raised by poll once the records before it are taken
        state.halt_at_damage(tp, epochs[tp], damage)
    for tp, p in problems:
        _partition_error(state, tp, epochs[tp], offsets[tp], p)
    return full


def _partition_error(
    state: SubscriptionState,
    tp: TopicPartition,
    epoch: int,
    offset: int,
    p: log_pb2.FetchPartitionResponse,
) -> None:
    """Apply one partition's error code: stored damage halts it (raised once reached), out
    of range resets it (or halts it without a reset policy); the error is raised unless
    the partition changed since the fetch (a stale error must not surface)."""
    exc = error_for_code(p.error_code, p.error_message or str(tp))
    if isinstance(exc, errors.CorruptRecordError):  # the broker found stored damage
        state.halt_at_damage(tp, epoch, broker_found_damage(tp, offset, p))
        return
    if isinstance(exc, errors.OffsetOutOfRangeError):
        if state.reset is not None:
            log.info("%s: %s; resetting per auto_offset_reset", tp, exc)
            state.lose_position(tp, epoch)
            return
        exc = errors.OffsetOutOfRangeError(
            f"{tp}: {exc.message}", earliest=p.log_start_offset, latest=p.high_watermark
        )
        if not state.halt(tp, epoch):  # stop fetching it until the application seeks
            return
    elif not state.is_current(tp, epoch):
        return
    raise exc


def broker_found_damage(
    tp: TopicPartition, offset: int, p: log_pb2.FetchPartitionResponse
) -> errors.CorruptRecordError:
    """The CorruptRecordError for a CORRUPT_MESSAGE answer at ``offset``: the damaged range
    as the broker sent it (the first offset the consumer cannot be given is ``offset``
    itself: the broker served everything before it)."""
    last = p.corrupt_last_offset if p.HasField("corrupt_last_offset") else None
    if last is not None and last < offset:
        last = None
    span = f"{offset}..{last}" if last is not None else f"{offset} on"
    return errors.CorruptRecordError(
        f"{tp.topic}-{tp.partition}: damaged offsets {span}: {p.error_message}",
        topic=tp.topic,
        partition=tp.partition,
        first_offset=offset,
        last_offset=last,
    )
