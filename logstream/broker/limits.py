"""Limits per client: connections and open streams per client address, request bytes per
connection.

gRPC names each call's connection by its peer (``ipv4:10.0.0.7:53122``: one TCP connection
per host:port); the client address is the host part. :class:`ClientLimits` counts, per
address, the connections that have a call open and the streams open (Subscribe,
ProduceStream), and per connection the decoded request bytes its unary calls hold:

- a call that would open one connection too many from its address, or one stream too many,
  is refused with RESOURCE_EXHAUSTED / ``CONNECTION_LIMIT_EXCEEDED`` (retriable);
- a unary request whose bytes would take its connection past
  ``max_request_bytes_per_connection`` is refused with THROTTLING_QUOTA_EXCEEDED, like
  the broker-wide cap (``rpc.ByteBudget``), so one connection cannot take all of it.

Not counted: a connection with no call open (grpcio has no hook on accept or close; an
idle connection costs the broker only its HTTP/2 state) and the message a stream is
processing (streams read one message at a time, held back by flow control; the broker-wide
cap covers them). A limit of 0 turns that limit off.

Concurrency: :meth:`ClientLimits.enter` and :meth:`Entry.leave` may run on the loop or in
pool threads; one lock guards the counters, and entries of an address or connection are
dropped when they reach zero (memory follows what is open, not who ever called).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from logstream.errors import ConnectionLimitExceededError, ThrottlingQuotaExceededError


def client_address(peer: str) -> str:
    """The host part of a gRPC peer string (``ipv6:[::1]:5000`` -> ``ipv6:[::1]``)."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


@dataclass
class _Address:
    streams: int = 0
    calls_by_connection: dict[str, int] = field(default_factory=dict)  # peer -> open calls


class Entry:
    """What one open call holds; :meth:`leave` gives it back (idempotent)."""

    __slots__ = ("_limits", "_nbytes", "_peer", "_stream")

    def __init__(self, limits: ClientLimits, peer: str, stream: bool, nbytes: int) -> None:
        self._limits = limits
        self._peer = peer
        self._stream = stream
        self._nbytes = nbytes

    def leave(self) -> None:
        limits, self._limits = self._limits, None  # type: ignore[assignment]
        if limits is not None:
            limits._leave(self._peer, self._stream, self._nbytes)


class ClientLimits:
    def __init__(
        self,
        *,
        max_connections_per_address: int = 0,
        max_streams_per_address: int = 0,
        max_request_bytes_per_connection: int = 0,
    ) -> None:
        self.max_connections = max_connections_per_address
        self.max_streams = max_streams_per_address
        self.max_bytes = max_request_bytes_per_connection
        self.refused = 0
        self._lock = threading.Lock()
        self._addresses: dict[str, _Address] = {}
        self._bytes: dict[str, int] = {}

    def enter(self, peer: str, *, stream: bool, nbytes: int = 0) -> Entry:
        """Count one call of ``peer`` (a stream or not, holding ``nbytes`` of request), or
        raise the limit it would break."""
        address = client_address(peer)
        with self._lock:
            a = self._addresses.get(address) or _Address()
            calls = a.calls_by_connection
            if self.max_connections and peer not in calls and len(calls) >= self.max_connections:
                self.refused += 1
                raise ConnectionLimitExceededError(
                    f"{address} already has {len(calls)} connections with calls open "
                    f"(max_connections_per_address {self.max_connections})"
                )
            if stream and self.max_streams and a.streams >= self.max_streams:
                self.refused += 1
                raise ConnectionLimitExceededError(
                    f"{address} already has {a.streams} streams open "
                    f"(max_streams_per_address {self.max_streams})"
                )
            held = self._bytes.get(peer, 0)
            if nbytes and self.max_bytes and held + nbytes > self.max_bytes:
                self.refused += 1
                raise ThrottlingQuotaExceededError(
                    f"this connection holds {held} request bytes; a {nbytes}-byte request "
                    f"does not fit in max_request_bytes_per_connection {self.max_bytes}, "
                    "retry later"
                )
            self._addresses[address] = a
            calls[peer] = calls.get(peer, 0) + 1
            a.streams += stream
            if nbytes:
                self._bytes[peer] = held + nbytes
        return Entry(self, peer, stream, nbytes)

    def _leave(self, peer: str, stream: bool, nbytes: int) -> None:
        address = client_address(peer)
        with self._lock:
            a = self._addresses.get(address)
            if a is not None:
                calls = a.calls_by_connection
                left = calls.get(peer, 1) - 1
                if left > 0:
                    calls[peer] = left
                else:
                    calls.pop(peer, None)
                a.streams -= stream
                if not calls:
                    del self._addresses[address]
            if nbytes:
                held = self._bytes.get(peer, 0) - nbytes
                if held > 0:
                    self._bytes[peer] = held
                else:
                    self._bytes.pop(peer, None)

    def open_streams(self, address: str) -> int:
        with self._lock:
            a = self._addresses.get(address)
            return a.streams if a is not None else 0
