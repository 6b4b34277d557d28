"""The broker's HTTP listener: ``/metrics``, ``/healthz``, ``/readyz``, and the web console
(``/``, ``/static/``, ``/api/``: ``console.py``).

A WSGI application served by the standard library's ``wsgiref`` server, one thread per
request (scrapes are rare and short), on its own daemon thread, so it never touches the
gRPC event loop. It starts *before* the data directory is opened: during recovery
``/healthz`` answers 200 (the process is alive) and ``/readyz`` 503; ``/readyz`` turns 200
once the broker serves (:meth:`HttpListener.attach` then :meth:`HttpListener.set_ready`)
and 503 again when shutdown begins. ``/metrics`` is the Prometheus text format of the
broker's registry (process metrics included); before the broker is attached it holds the
process metrics and ``logstream_ready 0``.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Gauge, ProcessCollector, make_wsgi_app

from logstream.broker.http.collector import BrokerCollector
from logstream.broker.http.console import Console, console_app
from logstream.broker.http.metrics import BrokerMetrics
from logstream.broker.http.session import ConsoleSessions
from logstream.broker.http.views import ConsoleApi
from logstream.broker.request_gate import AdmissionGate

log = logging.getLogger("logstream.broker.http")

StartResponse = Callable[..., Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


class HttpListener:
    """Serves on ``address`` (``HOST:PORT``; port 0 picks a free one) until :meth:`stop`."""

    def __init__(self, address: str, metrics: BrokerMetrics) -> None:
        host, _, port = address.rpartition(":")
        self.metrics = metrics
        self._ready = False
        self._collector: BrokerCollector | None = None
        self._console: Console | None = None
        ProcessCollector(registry=metrics.registry)
        self._not_ready = Gauge(
            "logstream_starting", "1 while the data directory is being recovered.",
            registry=metrics.registry,
        )  # fmt: skip
        self._not_ready.set(1)
        self._metrics_app = make_wsgi_app(metrics.registry)
        self.host = host.strip("[]")
        server_class = _ThreadingServer6 if ":" in self.host else _ThreadingServer
        self._server = make_server(
            self.host, int(port), self._app, server_class, handler_class=_QuietHandler
        )
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="logstream-http", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def ready(self) -> bool:
        return self._ready

    def attach(
        self,
        broker: Any,
        *,
        port: Callable[[], int],
        request_bytes: Callable[[], int],
        security: Any = None,
        throttle_seconds: Callable[[], tuple[float, float]] = lambda: (0.0, 0.0),
        request_gate: AdmissionGate | None = None,
    ) -> None:
        """Export ``broker``'s state from now on (after recovery, before serving).
        ``security`` (the port's ``EdgeSecurity``) gives the console its logins and ACLs;
        ``request_gate`` is the gRPC port's request-byte gate."""
        self._collector = BrokerCollector(
            broker,
            self.metrics,
            port=port,
            request_bytes=request_bytes,
            ready=lambda: self.ready,
            throttle_seconds=throttle_seconds,
            request_gate=request_gate,
        )
        self.metrics.registry.register(self._collector)
        store = getattr(security, "store", None)
        self._console = Console(
            ConsoleApi(broker, self.metrics, port),
            authenticated=bool(getattr(broker.config, "authenticated", False)),
            sessions=ConsoleSessions(store) if store is not None else None,
            authorizer=getattr(security, "authorizer", None),
        )

    def set_ready(self, ready: bool) -> None:
        self._ready = ready
        self._not_ready.set(0)

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            if self._ready:
                return _text(start_response, "200 OK", "ready\n")
            return _text(start_response, "503 Service Unavailable", "not ready\n")
        served = console_app(lambda: self._console, environ, start_response)
        if served is not None:
            return served
        return _text(start_response, "404 Not Found", "not found: try /metrics\n")

    def stop(self) -> None:
        self._ready = False
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
