"""The gRPC server: servicers + health + reflection over one Broker, and ``serve()``.

One ``grpc.aio`` server on an event loop in its own thread (``logstream-rpc-loop``), with a
thread pool (``max_workers`` threads) for the methods that block; see
docs/decisions/0019-server-model.md. An open stream or a waiting long-poll is a coroutine
(memory, no thread), so thousands of idle producers and subscribers cannot starve other
calls. Handlers are built by ``logstream.broker.rpc`` (safe decoding, the request-byte cap,
error translation).

The public API stays synchronous: ``start()``, ``stop()`` and ``wait_for_termination()``
may be called from any thread; they run their work on the loop and wait for it.

Shutdown order (:meth:`BrokerServer.stop`): health NOT_SERVING, stop accepting calls,
wake every long-poll and subscription, let in-flight calls finish within the grace
period, then ``Broker.close()`` (flush, clean-shutdown marker), then the loop and pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent import futures
from types import FrameType
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from logstream.broker.admission import UnaryAdmission
from logstream.broker.broker import Broker
from logstream.broker.config import BrokerConfig
from logstream.broker.group_servicer import GroupServicer
from logstream.broker.http import BrokerMetrics, event, metrics_for
from logstream.broker.http.rpc_metrics import observe_handler
from logstream.broker.http.server import HttpListener
from logstream.broker.limits import ClientLimits
from logstream.broker.network import server_options
from logstream.broker.queue_servicer import QueueServicer
from logstream.broker.queues import QueueManager
from logstream.broker.request_gate import AdmissionGate
from logstream.broker.rpc import ByteBudget, StreamAdmission, generic_handler, no_observer
from logstream.broker.security.edge import EdgeSecurity
from logstream.broker.security.servicer import SecurityServicer
from logstream.broker.servicers import AdminServicer, LogServicer
from logstream.coordinator.queues import QueueGroupDescription
from logstream.interrupts import quit_if_late
from logstream.protocol import admin_pb2, group_pb2, log_pb2, queue_pb2, security_pb2

log = logging.getLogger("logstream.broker")

T = TypeVar("T")

_SERVICES = (
    log_pb2.DESCRIPTOR.services_by_name["Log"],
    admin_pb2.DESCRIPTOR.services_by_name["Admin"],
    group_pb2.DESCRIPTOR.services_by_name["Group"],
    security_pb2.DESCRIPTOR.services_by_name["Security"],
    queue_pb2.DESCRIPTOR.services_by_name["Queue"],
)
SERVICE_NAMES = tuple(s.full_name for s in _SERVICES)


class BrokerServer:
    """A started-or-not gRPC server bound to a port, owning its Broker."""

    def __init__(
        self, config: BrokerConfig, broker: Broker, http: HttpListener | None = None
    ) -> None:
        self.config = config
        self.broker = broker
        self.http = http
        """The /metrics, /healthz, /readyz listener (``http_listen``), started before recovery."""
        self.queues = QueueManager(broker)
        broker.queues = self.queues
        broker.metrics.register_queue_source(self._queue_descriptions)
        self.request_budget = ByteBudget(config.max_request_bytes_in_flight)
        # Unary Produce calls and each ProduceStream read reserve a whole message's room
        # before gRPC receives it (broker/request_gate.py).
        self.request_gate = AdmissionGate(config.max_request_bytes_in_flight)
        self.admission = UnaryAdmission(self.request_gate, config.max_message_bytes)
        self.client_limits = ClientLimits(
            max_connections_per_address=config.max_connections_per_address,
            max_streams_per_address=config.max_streams_per_address,
            max_request_bytes_per_connection=config.max_request_bytes_per_connection,
        )
        self.pool = futures.ThreadPoolExecutor(
            max_workers=config.max_workers, thread_name_prefix="logstream-rpc"
        )
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self.loop.run_forever, name="logstream-rpc-loop", daemon=True
        )
        self._loop_thread.start()
        host, _, _ = config.listen.rpartition(":")
        self.host = host.strip("[]")
        self.health = health.aio.HealthServicer()
        try:
            self.security = EdgeSecurity(config, broker.manager)
            self.grpc_server, self.port = self._run(self._build())
        except BaseException:
            self._stop_loop()
            raise
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    def _queue_descriptions(self) -> list[QueueGroupDescription]:
        """Every queue group's depth, for ``/metrics`` and the console (called per scrape)."""
        return [desc for desc, _, _ in self.queues.list_groups()]

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _build(self) -> tuple[grpc.aio.Server, int]:
        config = self.config
        server = grpc.aio.server(
            migration_thread_pool=self.pool,
            interceptors=(*self.security.interceptors, self.admission),
            options=server_options(config),
        )
        servicers = (
            LogServicer(self.broker, self.pool),
            AdminServicer(self.broker),
            GroupServicer(self.broker),
            SecurityServicer(
                self.security.acls,
                self.security.authorizer,
                self.security.store,
                self.security.quotas,
            ),
            QueueServicer(self.broker, self.queues),
        )
        metrics = self.broker.metrics
        observe = (
            functools.partial(observe_handler, metrics)
            if isinstance(metrics, BrokerMetrics)
            else no_observer
        )
        server.add_generic_rpc_handlers(
            tuple(
                generic_handler(
                    service,
                    servicer,
                    self.request_budget,
                    observe,
                    self.client_limits,
                    StreamAdmission(self.request_gate, config.max_message_bytes),
                )
                for service, servicer in zip(_SERVICES, servicers, strict=True)
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        credentials = self.security.port_credentials()
        try:
            if credentials is None:
                port = server.add_insecure_port(config.listen)
            else:
                port = server.add_secure_port(config.listen, credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {config.listen}: {exc}") from exc
        if not port:
            raise OSError(f"cannot listen on {config.listen}")
        return server, port

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(10)
        if not self._loop_thread.is_alive():
            self.loop.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> None:
        self.broker.start()
        self.queues.start()
        self._run(self._start())
        if self.http is not None:
            self.http.attach(
                self.broker,
                port=lambda: self.port,
                request_bytes=lambda: self.request_budget.used,
                security=self.security,
                throttle_seconds=self._throttle_seconds,
                request_gate=self.request_gate,
            )
            self.http.set_ready(True)
        log.info(
            "serving on %s (data: %s; %s)",
            self.address,
            self.config.data_dir,
            self.security.description,
            extra=event(
                "broker_started",
                address=self.address,
                http_address=self.http.address if self.http else "",
                data_dir=str(self.config.data_dir),
            ),
        )

    async def _start(self) -> None:
        await self.grpc_server.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float | None = None) -> None:
        """Graceful stop; idempotent. ``grace`` defaults to ``config.grace_period_s``."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            grace = self.config.grace_period_s if grace is None else grace
            log.info(
                "shutting down (grace %.1fs)", grace, extra=event("broker_stopping", grace_s=grace)
            )
            if self.http is not None:
                self.http.set_ready(False)
            self._run(self.health.enter_graceful_shutdown())
            done = asyncio.run_coroutine_threadsafe(self.grpc_server.stop(grace), self.loop)
            self.broker.notifier.close()  # long-polls answer now instead of at their deadline
            done.result()
            self.queues.close()
            self.broker.close()
            self._stop_loop()
            if self.http is not None:
                self.http.stop()
            self._stopped.set()
            log.info("broker stopped", extra=event("broker_stopped"))

    def _throttle_seconds(self) -> tuple[float, float]:
        """(throttle reported to clients, time requests were held back), in seconds."""
        quotas, auth = self.security.quotas, self.security.auth
        if quotas is None or auth is None or auth.throttle is None:
            return 0.0, 0.0
        return quotas.throttled_s, auth.throttle.stalled_s

    def reload_security(self) -> None:
        """Read TLS certificates and the credentials file again (SIGHUP)."""
        self.security.reload()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)


def create_server(config: BrokerConfig) -> tuple[BrokerServer, int, Broker]:
    """Open the data dir and build a server bound to ``config.listen`` (port 0: any free).

    With ``config.http_listen``, the HTTP listener starts first, so ``/healthz`` answers
    (and ``/readyz`` says 503) while the data directory recovers.

    Returns ``(server, port, broker)``; call ``server.start()``, later ``server.stop()``.
    """
    http = _start_http(config)
    try:
        broker = Broker.open(config, metrics=http.metrics if http else None)
    except BaseException:
        if http is not None:
            http.stop()
        raise
    try:
        server = BrokerServer(config, broker, http)
    except BaseException:
        broker.close()
        if http is not None:
            http.stop()
        raise
    return server, server.port, broker


def _start_http(config: BrokerConfig) -> HttpListener | None:
    if not config.http_listen:
        return None
    metrics = metrics_for(config)
    assert isinstance(metrics, BrokerMetrics)
    try:
        http = HttpListener(config.http_listen, metrics)
    except OSError as exc:
        raise OSError(f"cannot listen for HTTP on {config.http_listen}: {exc}") from exc
    return http


def start_line(server: BrokerServer) -> str:
    return f"logstream broker listening on {server.address} (data: {server.config.data_dir})"


def serve(
    config: BrokerConfig,
    on_started: Callable[[BrokerServer], Callable[[], None]] | None = None,
    *,
    exiting: bool = False,
) -> int:
    """Run until SIGTERM/SIGINT, then shut down gracefully. Returns the exit status.

    ``on_started`` starts an extra edge (the Kafka listener) once the server serves, and
    returns how to stop it; it is stopped before the server. The start line comes after
    it, so a script that waits for that line finds every listener ready.

    ``exiting``: the process exits once this returns (the CLI), so after a signal's stop
    the three signals are left ignored: a repeat (``logstream/interrupts.py``) landing
    after the stop would otherwise find the previous handlers back (or, once the
    interpreter finalizes, the default action) and turn the clean stop's exit status into
    an interruption or a death by SIGTERM. Without it the previous handlers are put back.
    """
    server, _, _ = create_server(config)
    stop_edge: Callable[[], None] | None = None
    received: list[int] = []
    first_at: list[float] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if received:  # stopping: logstream/interrupts.py
            if signum != signal.SIGHUP:
                what = "interrupted" if signum == signal.SIGINT else "terminated"
                quit_if_late(first_at[0], what, 128 + signum)
            return
        if signum == signal.SIGHUP:
            threading.Thread(target=server.reload_security, name="logstream-reload").start()
            return
        first_at.append(time.monotonic())
        received.append(signum)

    previous = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    }
    # A signal may be delivered to any thread (gRPC's among them); Python runs the handler
    # later, on the main thread, and only once that thread runs bytecode again. Blocked in
    # Event.wait(), it did not: a SIGTERM caught by another thread left the broker waiting
    # until SIGKILL (1 start in ~40 here, when stopped right after its start line). The
    # wakeup fd is written by the C-level handler in whichever thread took the signal, so
    # the main thread's read returns and the handler runs.
    # (made after the handlers: off the main thread signal.signal raises, leaving no fd open)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    previous_wakeup = signal.set_wakeup_fd(wake_write)
    try:
        server.start()
        if server.http is not None:
            print(f"logstream http listening on {server.http.address}", flush=True)
        if on_started is not None:
            stop_edge = on_started(server)
        print(start_line(server), flush=True)  # last: every listener serves once it is out
        while not received:  # set by the handler: it has run, the previous ones can come back
            # woken by the pipe (a signal before this select left its byte there); the handler
            # runs at the loop's next check of pending signals, at the latest after 0.5 s
            if select.select([wake_read], [], [], 0.5)[0]:
                os.read(wake_read, 64)
        log.info("received %s", signal.Signals(received[0]).name)
    finally:
        # The handlers stay through the stop: a repeat soon after the first signal is the
        # same stop (it used to find the previous handlers back and cut the stop short).
        try:
            if stop_edge is not None:
                stop_edge()
            server.stop()
        finally:
            for sig, handler in previous.items():
                # (ignored when exiting: a Python handler would be replaced by the default
                # action while the interpreter finalizes, and a repeat would then kill it)
                signal.signal(sig, signal.SIG_IGN if exiting and received else handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_read)
            os.close(wake_write)
    sys.stdout.flush()
    return 0
