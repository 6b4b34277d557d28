"""The request-byte gate (broker/request_gate.py) and how a stream's reads pass it
(``rpc.admitted_messages``), in process: room first come first served, holds given back
from any thread or when dropped, parked reservations of idle reads revoked on demand,
bytes that arrived without room counted past the limit."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from logstream.broker import rpc
from logstream.broker.request_gate import AdmissionGate
from logstream.protocol import log_pb2


async def _pending(task: asyncio.Task[Any]) -> bool:
    for _ in range(5):  # let everything runnable run
        await asyncio.sleep(0)
    return not task.done()


def test_room_is_granted_in_arrival_order_and_given_back_from_any_thread() -> None:
    async def run() -> None:
        gate = AdmissionGate(100)
        first = gate.try_acquire(60)
        assert first is not None and gate.in_use == 60
        big = asyncio.create_task(gate.acquire(80))
        assert await _pending(big) and gate.waiting == 1
        # a small request that would fit does not pass the waiting big one
        assert gate.try_acquire(10) is None
        small = asyncio.create_task(gate.acquire(10))
        assert await _pending(small)
        # given back from another thread, as a synchronous handler's pool thread does
        threading.Thread(target=first.release).start()
        held_big = await asyncio.wait_for(big, 5)
        held_small = await asyncio.wait_for(small, 5)
        assert held_big is not None and held_small is not None and gate.in_use == 90
        held_big.release()
        held_big.release()  # once only
        assert gate.in_use == 10
        del held_small, small  # a hold that is dropped gives its room back
        gc.collect()
        assert gate.in_use == 0

    asyncio.run(run())


def test_a_request_larger_than_the_limit_is_admitted_alone() -> None:
    async def run() -> None:
        gate = AdmissionGate(100)
        held = gate.try_acquire(30)
        assert held is not None
        huge = asyncio.create_task(gate.acquire(500))
        assert await _pending(huge)
        held.release()
        hold = await asyncio.wait_for(huge, 5)
        assert hold is not None and gate.in_use == 500
        assert gate.try_acquire(1) is None
        hold.release()

    asyncio.run(run())


def test_waiters_that_give_up_leave_the_queue_or_pass_their_room_on() -> None:
    async def run() -> None:
        gate = AdmissionGate(10)
        held = gate.try_acquire(10)
        assert held is not None
        assert await gate.acquire(5, timeout_s=0.02) is None  # timed out
        assert gate.waiting == 0
        a = asyncio.create_task(gate.acquire(10))
        b = asyncio.create_task(gate.acquire(10))
        assert await _pending(b)
        held.release()  # granted to a...
        a.cancel()  # ...which is cancelled before it runs: b must get the room
        with pytest.raises(asyncio.CancelledError):
            await a
        hold = await asyncio.wait_for(b, 5)
        assert hold is not None and gate.in_use == 10 and gate.waiting == 0
        hold.release()
        assert gate.in_use == 0

    asyncio.run(run())


def test_a_parked_hold_stays_until_a_waiter_needs_its_room() -> None:
    async def run() -> None:
        gate = AdmissionGate(100)
        idle = gate.try_acquire(70)
        other = gate.try_acquire(30)
        assert idle is not None and other is not None
        gate.park(idle)
        assert idle.held and gate.parked == 1  # nobody waits: kept
        assert gate.unpark(idle) and gate.parked == 0
        gate.park(idle)
        waiter = asyncio.create_task(gate.acquire(50))
        hold = await asyncio.wait_for(waiter, 5)  # the parked room was taken back for it
        assert hold is not None and not idle.held and gate.in_use == 80
        assert not gate.unpark(idle)  # its read learns the room is gone
        # parking while somebody already waits gives the room back at once
        blocked = asyncio.create_task(gate.acquire(60))
        assert await _pending(blocked)
        gate.park(other)
        assert not other.held
        assert await _pending(blocked) and gate.in_use == 50
        hold.release()
        late = await asyncio.wait_for(blocked, 5)
        assert late is not None
        late.release()
        assert gate.in_use == 0

    asyncio.run(run())


def test_forced_bytes_may_pass_the_limit_and_later_requests_wait_for_them() -> None:
    async def run() -> None:
        gate = AdmissionGate(100)
        arrived = gate.force(150)
        assert gate.in_use == 150
        waiter = asyncio.create_task(gate.acquire(1))
        assert await _pending(waiter)
        arrived.release()
        hold = await asyncio.wait_for(waiter, 5)
        assert hold is not None
        hold.resize(40)  # trued up to what arrived
        assert gate.in_use == 40
        hold.release()

    asyncio.run(run())


def _decoded(size: int, budget: rpc.ByteBudget) -> rpc._Decoded:
    message = log_pb2.ProduceRequest(correlation_id=size)
    return rpc._Decoded(message, size, budget, 0)


class _Stream:
    """A stream's raw request iterator whose messages the test releases one at a time."""

    def __init__(self, budget: rpc.ByteBudget) -> None:
        self.budget = budget
        self.queue: asyncio.Queue[int | None] = asyncio.Queue()
        self.reads = 0

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> rpc._Decoded:
        self.reads += 1
        size = await self.queue.get()
        if size is None:
            raise StopAsyncIteration
        return _decoded(size, self.budget)


def test_a_stream_reserves_before_each_read_and_idle_reads_give_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rpc, "READ_PARK_S", 0.05)
    unit = 1000

    async def run() -> None:
        gate = AdmissionGate(2 * unit)
        budget = rpc.ByteBudget(1 << 30)
        admission = rpc.StreamAdmission(gate, unit)
        stream = _Stream(budget)
        messages: AsyncIterator[Any] = rpc.admitted_messages(stream, admission)
        first = asyncio.create_task(anext(messages))
        assert await _pending(first)
        assert gate.in_use == unit  # the first read reserves a whole message
        stream.queue.put_nowait(300)
        assert (await first).correlation_id == 300
        assert gate.in_use == 300  # trued up to the message while it is handled
        second = asyncio.create_task(anext(messages))
        assert await _pending(second)
        # later reads reserve what the message before took (at least the HTTP/2 window)
        assert gate.in_use == rpc.MIN_READ_RESERVE
        # the stream idles: its reservation is parked, and a waiter takes it back
        await asyncio.sleep(0.15)
        assert gate.parked == 1
        other = await asyncio.wait_for(gate.acquire(2 * unit), 5)
        assert other is not None and gate.parked == 0
        # the message that arrives now had no room: counted past the limit
        stream.queue.put_nowait(500)
        assert (await second).correlation_id == 500
        assert gate.in_use == 2 * unit + 500
        assert gate.unreserved_bytes == 500 and gate.waits == 1
        other.release()
        stream.queue.put_nowait(None)
        with pytest.raises(StopAsyncIteration):
            await anext(messages)
        assert gate.in_use == 0 and budget.used == 0

    asyncio.run(run())


def test_a_message_larger_than_its_reservation_is_counted_in_full_and_as_unreserved() -> None:
    async def run() -> None:
        gate = AdmissionGate(10 * rpc.MIN_READ_RESERVE)
        budget = rpc.ByteBudget(1 << 30)
        stream = _Stream(budget)
        messages = rpc.admitted_messages(stream, rpc.StreamAdmission(gate, gate.limit))
        stream.queue.put_nowait(100)
        assert (await anext(messages)).correlation_id == 100
        assert gate.unreserved_bytes == 0  # the first read reserved a whole message
        large = 3 * rpc.MIN_READ_RESERVE
        stream.queue.put_nowait(large)  # the read before it reserved MIN_READ_RESERVE
        assert (await anext(messages)).correlation_id == large
        assert gate.in_use == large
        assert gate.unreserved_bytes == large - rpc.MIN_READ_RESERVE
        following = asyncio.create_task(anext(messages))
        assert await _pending(following)
        assert gate.in_use == large  # the next read reserves what the last message took
        stream.queue.put_nowait(None)
        with pytest.raises(StopAsyncIteration):
            await following
        assert gate.in_use == 0 and gate.unreserved_bytes == large - rpc.MIN_READ_RESERVE

    asyncio.run(run())


def test_a_stream_waits_for_room_instead_of_being_refused() -> None:
    async def run() -> None:
        gate = AdmissionGate(1000)
        budget = rpc.ByteBudget(1 << 30)
        stream = _Stream(budget)
        messages = rpc.admitted_messages(stream, rpc.StreamAdmission(gate, 1000))
        blocker = gate.try_acquire(1000)
        assert blocker is not None
        read = asyncio.create_task(anext(messages))
        await asyncio.sleep(0.1)
        assert not read.done() and stream.reads == 0  # not even asked gRPC for it
        blocker.release()
        stream.queue.put_nowait(10)
        assert (await asyncio.wait_for(read, 5)).correlation_id == 10
        await messages.aclose()
        assert gate.in_use == 0

    asyncio.run(run())
