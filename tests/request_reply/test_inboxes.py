"""The broker's reply inboxes (logstream/broker/inboxes.py) in-process: what is held, what is
dropped, and that nothing outlives the stream."""

from __future__ import annotations

import asyncio

import pytest

from logstream.broker.inboxes import Inboxes
from logstream.broker.notify import AppendNotifier
from logstream.codec import encode_batch, iter_batches
from logstream.errors import CorruptRecordError, InvalidRequestError, InvalidTopicError
from logstream.protocol.request_reply import new_inbox


def batch(value: bytes) -> bytes:
    return encode_batch([value])


def test_a_reply_to_a_closed_inbox_is_dropped_and_counted() -> None:
    inboxes = Inboxes(AppendNotifier())
    assert inboxes.deliver(new_inbox(), 0, [batch(b"late")]) == 0
    assert (inboxes.discarded, inboxes.delivered, len(inboxes)) == (1, 0, 0)
    assert inboxes.queued_bytes() == 0


def test_bad_names_partitions_and_batches_are_refused() -> None:
    inboxes = Inboxes(AppendNotifier())
    with pytest.raises(InvalidTopicError):
        inboxes.deliver("_inbox.NOT-HEX", 0, [batch(b"x")])
    with pytest.raises(InvalidRequestError, match="one partition"):
        inboxes.deliver(new_inbox(), 1, [batch(b"x")])
    damaged = bytearray(batch(b"x"))
    damaged[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        inboxes.deliver(new_inbox(), 0, [bytes(damaged)])


def test_stream_gets_its_replies_and_the_inbox_goes_with_the_stream() -> None:
    async def scenario() -> None:
        notifier = AppendNotifier()
        inboxes = Inboxes(notifier, max_bytes=1000)
        name = new_inbox()
        stream = inboxes.stream(name, heartbeat_s=5)
        assert await anext(stream) == b""  # open
        assert len(inboxes) == 1
        with pytest.raises(InvalidRequestError, match="already open"):
            await anext(inboxes.stream(name))
        assert inboxes.deliver(name, 0, [batch(b"one"), batch(b"two")]) == 2
        pushed = await asyncio.wait_for(anext(stream), 5)
        assert [b.value(0) for b in iter_batches(pushed)] == [b"one", b"two"]
        # a reader that stops reading: beyond max_bytes new replies are dropped
        big = batch(b"x" * 300)
        queued = sum(inboxes.deliver(name, 0, [big]) for _ in range(10))
        assert queued == 1000 // len(big)
        assert inboxes.discarded == 10 - queued
        assert inboxes.queued_bytes() <= 1000
        await stream.aclose()  # the stream ends: the inbox and what it held are gone
        assert len(inboxes) == 0 and inboxes.queued_bytes() == 0
        assert inboxes.deliver(name, 0, [batch(b"late")]) == 0
        notifier.close()

    asyncio.run(scenario())
