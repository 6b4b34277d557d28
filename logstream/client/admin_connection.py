"""The connection an admin client holds: one transport, a per-call timeout, and closing.

``Admin`` (topics) and ``GroupAdmin`` (consumer and queue groups) both derive from
:class:`AdminConnection`. A transport passed in is shared and left open on ``close()``; one
made here from an address string is closed with the client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from logstream.client import transport as tr


class AdminConnection:
    """Connect to one broker for administrative calls (each call is one independent RPC,
    so instances are thread-safe)."""

    def __init__(
        self,
        bootstrap: str | tr.TransportLike,
        *,
        request_timeout_ms: int = 30_000,
        tls: bool = False,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        token: str | None = None,
    ) -> None:
        self._owns_transport = isinstance(bootstrap, str)
        self._transport = tr.connect(
            bootstrap, tr.ChannelSecurity.of(tls=tls, ca=ca, cert=cert, key=key, token=token)
        )
        self._timeout = request_timeout_ms / 1000.0

    def close(self) -> None:
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
