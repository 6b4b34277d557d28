"""One Kafka client connection as an :class:`asyncio.Protocol`: frames in, answers out.

Framing (big-endian): ``size i32`` then ``size`` bytes of request (``wire.py``). Bytes
arrive in :meth:`KafkaConnection.data_received` and collect in one buffer; each complete
frame is cut out and handed to the listener's ``dispatch``, which answers at once (a
synchronous handler: Produce), with a coroutine (a long-poll of several partitions, a pool
hand-off, SASL), which costs a task, or with a :class:`Pending` that answers later
through :meth:`KafkaConnection.answer_pending` (a one-partition Fetch parked as a
registration, ``parked_fetch.py``: no task). There is no stream reader or writer between
the socket and the handlers, so a request costs no awaits and no extra passes of the loop
beyond what its handler needs.

Order and flow control (Kafka's rules): a connection handles one request at a time and
writes the answers in request order; while a request is in hand, further bytes only
collect in the buffer, and past :data:`PAUSE_READING_AT` buffered bytes the transport
stops reading, so a pipelining client is held back by TCP flow control. While the
transport's write buffer is over its high-water mark (a client not reading its answers)
no further request is handled.

A Produce answered synchronously is written on the loop's next pass, not at once: the
long-polls its append woke were scheduled first, so their answers go out before it (as
Kafka completes the delayed fetches an append satisfies before the produce's answer).
A Fetch parked at the appended batch's offset may be answered by the Produce's handler
itself (``handoff.py``) through :meth:`KafkaConnection.answer_early`: its answer is
written at once, its wait cancelled, and its connection takes its next request on the
loop's next pass.

Request bytes gate (``broker/request_gate.py``): a frame's size is known from its prefix;
its body is taken from the buffer only once the gate admitted that many bytes, and the
hold is released when its answer is written. While waiting for room, reading stops.

Bad input: a size outside ``[MIN_FRAME, max_request_bytes]`` closes the connection; a
frame whose body has not arrived within the listener's frame timeout is found by the
listener's sweep through :attr:`KafkaConnection.reading_since` (loop time the body
started to be awaited, None otherwise) and aborted. A handler that raises a
LogstreamError (e.g. the broker shutting down) closes the connection with a warning; any
other exception is logged with its traceback and closes it.

Concurrency: everything here runs on the listener's loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from logstream.broker.request_gate import AdmissionGate, Hold
from logstream.errors import LogstreamError
from logstream.kafka.sasl import SaslSession

log = logging.getLogger("logstream.kafka")

SIZE = struct.Struct(">i")
MIN_FRAME = 8  # api_key, api_version, correlation_id
PRODUCE_KEY = (0).to_bytes(2, "big")  # a Produce frame's first two bytes
PAUSE_READING_AT = 128 * 1024
"""Bytes buffered beyond the frame in hand at which reading stops (asyncio streams stop at
twice their 64 KiB limit; the same bound)."""

Answer = tuple[bytes, bool]
"""(the response frame, or b"" for none; keep the connection open)."""


class Pending(Protocol):
    """A request in hand that answers later without a task (``parked_fetch.ParkedRead``):
    it calls :meth:`KafkaConnection.answer_pending` or ``fail_pending`` when done."""

    def done(self) -> bool: ...

    def cancel(self) -> bool: ...


Dispatch = Callable[[bytes, "KafkaConnection"], "Answer | Coroutine[Any, Any, Answer] | Pending"]


class KafkaConnection(asyncio.Protocol):
    """One client: its framing state, who it is and where SASL stands."""

    def __init__(
        self,
        dispatch: Dispatch,
        *,
        max_request_bytes: int,
        gate: AdmissionGate | None,
        registry: set[KafkaConnection],
        authenticated: bool,
        principal_of: Callable[[dict[str, Any] | None], str],
    ) -> None:
        self._dispatch = dispatch
        self._max_request_bytes = max_request_bytes
        self._gate = gate
        self._registry = registry
        self._principal_of = principal_of
        self.authenticated = authenticated
        self.principal = ""
        self.peer: object = None
        self.sasl: SaslSession | None = None
        self.raw_sasl = False  # after a v0 SaslHandshake the next frames are bare tokens
        self.reading_since: float | None = None
        self.transport: asyncio.Transport | None = None
        # the request in hand, when it awaits (a task) or waits registered (a Pending)
        self.task: asyncio.Task[None] | Pending | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = bytearray()
        self._size = -1  # the size of the frame being read, once its prefix is in
        self._hold: Hold | None = None
        self._busy = False  # a request is in hand (or a gate wait)
        self._reading_paused = False
        self._writing_paused = False
        self._eof = False
        self._tls = False
        self._closed = False

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self.peer = transport.get_extra_info("peername")
        self._tls = transport.get_extra_info("sslcontext") is not None
        self.principal = self._principal_of(transport.get_extra_info("peercert"))
        self._registry.add(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._advance()
        elif len(self._buffer) > PAUSE_READING_AT and not self._reading_paused:
            self._pause_reading()

    def eof_received(self) -> bool:
        # The client closed its side: finish the request in hand (its answer may still be
        # read), then close; returning True keeps the transport open until then. Over
        # TLS asyncio closes the transport regardless (as the streams did): say so.
        self._eof = True
        if not self._busy:
            self._advance()
        return not self._tls

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._registry.discard(self)
        self.reading_since = None
        if self.task is not None:
            self.task.cancel()
        self._release()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if not self._busy:
            self._advance()

    # -- framing -----------------------------------------------------------------------

    def _advance(self) -> None:
        """Handle every complete frame in the buffer, one at a time, until a request is
        in hand (busy), the buffer runs out or the connection closes."""
        buf = self._buffer
        while not self._busy and not self._closed and not self._writing_paused:
            size = self._size
            if size < 0:
                if len(buf) < SIZE.size:
                    break
                size = SIZE.unpack_from(buf)[0]
                if size < MIN_FRAME or size > self._max_request_bytes:
                    log.warning(
                        "kafka: %s sent a frame of %d bytes; disconnecting", self.peer, size
                    )
                    self.close()
                    return
                self._size = size
                if self._gate is not None:
                    hold = self._gate.try_acquire(size)
                    if hold is None:
                        self._wait_for_room(size)
                        return
                    self._hold = hold
            if len(buf) < SIZE.size + size:
                if self.reading_since is None:
                    self.reading_since = self._now()  # a stall here is dropped by the sweep
                break
            self.reading_since = None
            frame = bytes(buf[SIZE.size : SIZE.size + size])
            del buf[: SIZE.size + size]
            self._size = -1
            self._handle(frame)
        if self._closed:
            return
        if self._eof and not self._busy:
            self.close()  # nothing more can complete
            return
        if self._reading_paused and not self._busy:
            # nothing in hand: the rest of the frame being read (admitted by its size
            # check and the gate) is needed, however much is buffered
            self._reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()

    def _handle(self, frame: bytes) -> None:
        try:
            answer = self._dispatch(frame, self)
        except Exception as exc:
            self._failed(exc)
            return
        if isinstance(answer, tuple):
            if frame[:2] == PRODUCE_KEY:
                # Let the long-polls this append woke answer first: their tasks were
                # scheduled by the append, this goes after them.
                self._busy = True
                assert self._loop is not None
                self._loop.call_soon(self._finish, answer)
            else:
                self._write(answer)
            return
        self._busy = True
        if isinstance(answer, Coroutine):
            assert self._loop is not None
            self.task = self._loop.create_task(self._run(answer))
        else:
            self.task = answer  # it answers through answer_pending

    async def _run(self, pending: Coroutine[Any, Any, Answer]) -> None:
        try:
            answer = await pending
        except asyncio.CancelledError:
            return  # the connection is gone (or the listener stops)
        except Exception as exc:
            self._failed(exc)
            return
        finally:
            if self.task is asyncio.current_task():
                self.task = None
        self._finish(answer)  # in this task's step: no further pass of the loop

    def answer_pending(
        self, pending: Pending, answer: Answer | Coroutine[Any, Any, Answer]
    ) -> None:
        """``pending`` (the request in hand) has its answer: write it now, in this step, or
        run the coroutine that builds it as the request's task."""
        if self.task is not pending:
            return  # cancelled meanwhile (the connection is gone)
        self.task = None
        if isinstance(answer, tuple):
            self._finish(answer)
            return
        assert self._loop is not None
        self.task = self._loop.create_task(self._run(answer))

    def fail_pending(self, pending: Pending, exc: Exception) -> None:
        if self.task is pending:
            self.task = None
            self._failed(exc)

    def answer_early(self, answer: Answer) -> bool:
        """Write the answer to the request in hand now, from outside its task (a Produce
        handing its batch to this connection's parked Fetch, ``handoff.py``), and cancel
        the task; the next request is taken on the loop's next pass. False when there is
        no task in hand to answer for (the connection closed, or nothing waits)."""
        task = self.task
        if task is None or self._closed or task.done():
            return False
        self.task = None
        task.cancel()  # a Pending just drops its wait; a task leaves through CancelledError
        self._write(answer)
        assert self._loop is not None
        self._loop.call_soon(self._resume)
        return True

    def _resume(self) -> None:
        self._busy = False
        if not self._closed:
            self._advance()

    def _finish(self, answer: Answer) -> None:
        self._busy = False
        self._write(answer)
        if not self._closed:
            self._advance()

    def _write(self, answer: Answer) -> None:
        response, keep_open = answer
        if self._closed:
            return
        assert self.transport is not None
        if response:
            self.transport.write(response)
        self._release()
        if not keep_open:
            self.close()

    def _wait_for_room(self, size: int) -> None:
        assert self._gate is not None and self._loop is not None
        self._busy = True
        self._pause_reading()
        self.task = self._loop.create_task(self._admit(self._gate, size))

    async def _admit(self, gate: AdmissionGate, size: int) -> None:
        try:
            hold = await gate.acquire(size)
        except asyncio.CancelledError:
            return
        finally:
            self.task = None
        assert hold is not None  # no timeout given
        if self._closed:
            hold.release()
            return
        self._hold = hold
        self._busy = False
        self._advance()

    # -- helpers -----------------------------------------------------------------------

    def _failed(self, exc: Exception) -> None:
        """A handler raised (synchronously or in its task): close the connection. A
        LogstreamError is expected (the broker shutting down): a warning; anything else
        is a bug: its traceback."""
        if isinstance(exc, LogstreamError):
            log.warning("kafka: closing %s: %s", self.peer, exc)
        else:
            log.error("kafka: connection %s failed", self.peer, exc_info=exc)
        self.close()

    def _release(self) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.release()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def close(self) -> None:
        """Close after what is written so far; handle nothing more."""
        self._closed = True
        self.reading_since = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once (a stalled frame, the listener stopping)."""
        self._closed = True
        if self.transport is not None:
            self.transport.abort()
