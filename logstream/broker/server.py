"""The gRPC server: servicers + health + reflection over one Broker, and ``serve()``.

Threaded ``grpc.server`` (not ``grpc.aio``): measured equal or better for this traffic and a
natural fit for the synchronous storage API and condition-variable long-polls; see
docs/architecture.md, decision "Threaded gRPC server".

Shutdown order (:meth:`BrokerServer.stop`): health NOT_SERVING, stop accepting calls,
wake every long-poll and subscription, let in-flight calls finish within the grace
period, then ``Broker.close()`` (flush, clean-shutdown marker).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from concurrent import futures
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from logstream.broker.broker import Broker
from logstream.broker.config import BrokerConfig
from logstream.broker.group_servicer import GroupServicer
from logstream.broker.servicers import AdminServicer, LogServicer
from logstream.protocol import (
    admin_pb2,
    admin_pb2_grpc,
    group_pb2,
    group_pb2_grpc,
    log_pb2,
    log_pb2_grpc,
)

log = logging.getLogger("logstream.broker")

SERVICE_NAMES = (
    log_pb2.DESCRIPTOR.services_by_name["Log"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    group_pb2.DESCRIPTOR.services_by_name["Group"].full_name,
)


class BrokerServer:
    """A started-or-not gRPC server bound to a port, owning its Broker."""

    def __init__(self, config: BrokerConfig, broker: Broker) -> None:
        self.config = config
        self.broker = broker
        options = [
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        self.grpc_server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=config.max_workers, thread_name_prefix="logstream-rpc"
            ),
            options=options,
        )
        log_pb2_grpc.add_LogServicer_to_server(LogServicer(broker), self.grpc_server)
        admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(broker), self.grpc_server)
        group_pb2_grpc.add_GroupServicer_to_server(GroupServicer(broker), self.grpc_server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc_server
        )
        host, _, _ = config.listen.rpartition(":")
        self.host = host.strip("[]")
        try:
            self.port = self.grpc_server.add_insecure_port(config.listen)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {config.listen}: {exc}") from exc
        if not self.port:
            raise OSError(f"cannot listen on {config.listen}")
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> None:
        self.broker.start()
        self.grpc_server.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving on %s (data: %s)", self.address, self.config.data_dir)

    def stop(self, grace: float | None = None) -> None:
        """Graceful stop; idempotent. ``grace`` defaults to ``config.grace_period_s``."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            grace = self.config.grace_period_s if grace is None else grace
            log.info("shutting down (grace %.1fs)", grace)
            self.health.enter_graceful_shutdown()
            done = self.grpc_server.stop(grace)
            self.broker.notifier.close()  # long-polls answer now instead of at their deadline
            done.wait()
            self.broker.close()
            self._stopped.set()
            log.info("broker stopped")

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)


def create_server(config: BrokerConfig) -> tuple[BrokerServer, int, Broker]:
    """Open the data dir and build a server bound to ``config.listen`` (port 0: any free).

    Returns ``(server, port, broker)``; call ``server.start()``, later ``server.stop()``.
    """
    broker = Broker.open(config)
    try:
        server = BrokerServer(config, broker)
    except BaseException:
        broker.close()
        raise
    return server, server.port, broker


def start_line(server: BrokerServer) -> str:
    return f"logstream broker listening on {server.address} (data: {server.config.data_dir})"


def serve(config: BrokerConfig) -> int:
    """Run until SIGTERM/SIGINT, then shut down gracefully. Returns the exit status."""
    server, _, _ = create_server(config)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        print(start_line(server), flush=True)
        stop.wait()
        log.info("received %s", signal.Signals(received[0]).name if received else "stop")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    sys.stdout.flush()
    return 0
