"""A broker that takes a while to answer a new connection (a loaded machine) is still
reached: the client allows a connection attempt gRPC's usual time, not the 50 ms of its
fast-reconnect backoff."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from logstream import Admin

DELAY_S = 0.3


def _forward(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            time.sleep(DELAY_S)  # every chunk, the handshake's included, arrives late
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def slow_proxy(target: str) -> Iterator[str]:
    """A loopback TCP proxy to ``target`` that delays everything by ``DELAY_S``."""
    host, _, port = target.rpartition(":")
    listener = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                upstream = socket.create_connection((host, int(port)))
                conns.extend((client, upstream))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_forward, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for c in conns:
            c.close()


def test_a_slow_handshake_is_waited_for(broker: Any) -> None:
    with slow_proxy(broker.address) as address, Admin(address) as admin:
        names = [t.name for t in admin.list_topics()]
    assert isinstance(names, list)
