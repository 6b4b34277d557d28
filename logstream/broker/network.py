"""What the broker asks of the network: its gRPC server options and a check that the listen
address is free before anything is created.

Keepalive: clients ping every ``keepalive_time_ms`` (30 s by default, see
``logstream.client.transport``), also on a connection whose only call is an idle long-poll
that sends no data. gRPC's default server policy accepts such pings at most every 5 minutes
and answers a third early one with GOAWAY ``too_many_pings``, which kills every stream of the
connection (an idle ``tail -f`` died after minutes). The broker therefore accepts pings
without data every ``keepalive_min_ping_interval_ms`` (10 s by default), which must not be
more than the clients' ping interval, also while no call is open.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from logstream.broker.config import BrokerConfig


def server_options(config: BrokerConfig) -> list[tuple[str, Any]]:
    """The ``grpc.server`` options for ``config``: message limits and the keepalive policy."""
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        (
            "grpc.http2.min_recv_ping_interval_without_data_ms",
            config.keepalive_min_ping_interval_ms,
        ),
        ("grpc.http2.min_ping_interval_without_data_ms", config.keepalive_min_ping_interval_ms),
        ("grpc.http2.max_pings_without_data", 0),
        # Keep each call's receive window at HTTP/2's initial size: with probing on, gRPC
        # grows it until it takes whole messages the broker has not admitted yet
        # (broker/admission.py).
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", 1024 * 1024),
    ]


def check_listen_address(listen: str) -> None:
    """Raise ``OSError("address already in use: HOST:PORT")`` if another process listens
    there. Port 0 (any free port) always passes; other bind errors are left to gRPC."""
    host, _, port_text = listen.rpartition(":")
    port = int(port_text)
    if port == 0:
        return
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {listen}: {exc.strerror}") from None
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            # As gRPC binds: a socket in TIME_WAIT does not make the port busy.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(f"address already in use: {listen}") from None
