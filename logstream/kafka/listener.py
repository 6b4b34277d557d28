"""The Kafka listener: a plain asyncio TCP server on its own thread, in front of a Broker.

It runs its own event loop on a daemon thread, beside the gRPC server's loop, and touches
the broker only through the handlers' calls. Blocking broker calls (produce, commits,
admin) run on the listener's thread pool; fetch long-polls wait on its loop (the broker's
notifier wakes waiters on any loop): a one-partition Fetch as a registration with the
notifier plus a timer (``parked_fetch.py``, decision 0047), others as coroutines; the
loop reads and writes frames.

Per connection (Kafka's rules; :mod:`connection`, an ``asyncio.Protocol``): requests are
handled one at a time and answered in order; bytes that arrive meanwhile wait in the
connection's buffer (reading stops past 128 KiB), which bounds what a client that pipelines
can make the broker buffer. A Produce with acks=0 gets no answer. A Produce is answered on
the loop's next pass after its append, so the long-polls the append woke answer first (and
before the connection's next, pipelined and already buffered, request); a one-partition
Fetch parked at the appended batch's offset is answered by the Produce's handler itself,
from the producer's bytes (``handoff.py``, decision 0045).
Across connections, a frame's body is taken only once its size (known from the prefix) has
room in the broker's request-byte gate (``request_gate``: the one gRPC's Produce and
ProduceStream pass, ``broker/request_gate.py``), held until the frame is answered;
meanwhile the connection stops reading and the client is held back by TCP flow control.
Without a gate (tests, embedding) frames are taken at once.

Bad input, and what the listener does (it never stops serving other connections):

- a size prefix below a request header or above ``max_request_bytes``: disconnect;
- a frame not completed within ``frame_timeout_s`` (half a frame, then a stall): disconnect
  (one sweep of the connections every ``frame_timeout_s / 4``, at most 1 s, finds it: no
  timer per request);
- an undecodable body: disconnect, as Kafka does;
- an unknown API key or version: ApiVersions answers in v0 with UNSUPPORTED_VERSION and
  the versions it has (Kafka's rule, so the client can retry); any other API gets a frame
  of its correlation id and UNSUPPORTED_VERSION (the body shape of that version is unknown
  to us), then a disconnect;
- a handler that fails unexpectedly: logged, the connection closed.

Security (docs/security.md, "Kafka listener"): with the broker's TLS certificate the
port speaks TLS (and with ``--tls-client-ca`` requires a client certificate, whose CN is
the principal); with ``--auth`` a connection must complete SASL (SaslHandshake v0-1 then
SaslAuthenticate v0-2, or raw tokens after a v0 handshake; :mod:`sasl`) before any API
but ApiVersions, else it is closed, as Kafka does; a failed authentication is answered
SASL_AUTHENTICATION_FAILED and closed. With ``--acls`` every API checks the principal's
rules (:mod:`access`).

Quotas (the gRPC port's, docs/security.md): with authentication on, every request of an
authenticated principal counts against its request rate, a Produce's frame bytes against
its produce quota and a Fetch answer's record bytes against its fetch quota. Kafka's way
(KIP-219): the answer goes out at once with ``throttle_time_ms`` set, and the principal's
next request, on any connection of either port, is held until that time has passed.
Clients that honour the throttle (librdkafka, the Java client) send nothing meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from logstream.broker.broker import Broker
from logstream.broker.fetch import FetchOutcome
from logstream.broker.request_gate import AdmissionGate
from logstream.kafka import parked_fetch, wire
from logstream.kafka.access import Access
from logstream.kafka.admin_apis import VERSIONS as ADMIN_VERSIONS
from logstream.kafka.admin_apis import AdminApis
from logstream.kafka.connection import Answer, KafkaConnection
from logstream.kafka.fast_encode import records_size
from logstream.kafka.group_apis import VERSIONS as GROUP_VERSIONS
from logstream.kafka.group_apis import GroupApis
from logstream.kafka.handoff import parkable
from logstream.kafka.log_apis import INLINE_FETCH_BYTES, LogApis
from logstream.kafka.sasl import MECHANISMS, SaslFailed, SaslSession
from logstream.kafka.wire import FrameError, Request, UnsupportedVersion, build

if TYPE_CHECKING:  # the gRPC port's security object; only its stores are used here
    from logstream.broker.security.edge import EdgeSecurity
    from logstream.broker.security.throttle import Throttle

log = logging.getLogger("logstream.kafka")

DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes

Handler = Callable[[Request], Awaitable[Any]]
InlineHandler = Callable[[Request], Any]


_BEFORE_AUTHENTICATION = frozenset({wire.API_VERSIONS, wire.SASL_HANDSHAKE, wire.SASL_AUTHENTICATE})


class KafkaListener:
    """``start()`` binds and serves on a new thread; ``stop()`` closes every connection.

    Thread-safe start/stop; the handlers run on the loop thread and the pool.
    ``security`` (the gRPC port's ``EdgeSecurity``) supplies TLS, the user store and ACLs.
    """

    def __init__(
        self,
        broker: Broker,
        listen: str,
        *,
        security: EdgeSecurity | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        frame_timeout_s: float = 30.0,
        workers: int = 16,
        request_gate: AdmissionGate | None = None,
    ) -> None:
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"kafka listen address must be HOST:PORT, got {listen!r}")
        self.broker = broker
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.max_request_bytes = max_request_bytes
        self.frame_timeout_s = frame_timeout_s
        self.request_gate = request_gate
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="logstream-kafka")
        self.store = security.store if security is not None else None
        auth = getattr(security, "auth", None)  # None: without --auth (or a bare test object)
        self.throttle: Throttle | None = auth.throttle if auth is not None else None
        self.tls = security.tls if security is not None else None
        self._ssl = self._ssl_context()
        if security is not None and self.tls is not None:
            security.reload_hooks.append(self.reload_tls)
        access = Access(security.acls if security is not None else None)
        self.apis = LogApis(broker, lambda: (self.host, self.port), access)
        self._handlers: dict[int, Handler] = {
            wire.API_VERSIONS: self._sync(self.apis.api_versions),
            wire.METADATA: self._sync(self.apis.metadata),
            wire.FETCH: lambda req: self.apis.fetch(req, self.pool),
            wire.LIST_OFFSETS: self._sync(self.apis.list_offsets),
            wire.INIT_PRODUCER_ID: self._sync(self.apis.init_producer_id),
        }
        admin = AdminApis(broker, access)
        for api_key, fn in admin.handlers().items():
            self.add_handler(api_key, ADMIN_VERSIONS[api_key], self._sync(fn))
        if broker.coordinator is not None:
            groups = GroupApis(broker, lambda: (self.host, self.port), self.pool, access)
            for api_key, handler in groups.handlers().items():
                self.add_handler(api_key, GROUP_VERSIONS[api_key], handler)
        # Run on the loop itself: a Produce's work (convert, copy into the mapped segment)
        # is shorter than two thread hand-offs under the GIL; acks never wait for a flush
        # here (Kafka's acks map to logstream's ``leader``).
        self._inline: dict[int, InlineHandler] = {wire.PRODUCE: self.apis.produce}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._open: set[KafkaConnection] = set()  # the loop's own: read and written there only
        if self.store is not None:
            wire.register(wire.SASL_HANDSHAKE, (0, 1))
            wire.register(wire.SASL_AUTHENTICATE, (0, 2))

    def add_handler(self, api_key: int, versions: tuple[int, int], handler: Handler) -> None:
        wire.register(api_key, versions)
        self._handlers[api_key] = handler

    def _sync(self, fn: Callable[[Request], Any]) -> Handler:
        async def run(req: Request) -> Any:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, req)

        return run

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Bind (port 0: a free port, then ``self.port``) and serve on a daemon thread."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(self._new_connection, self.host, self.port, ssl=self._ssl)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.call_soon(self._sweep)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="logstream-kafka-loop", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise OSError(f"cannot listen on {self.host}:{self.port}: {failure[0]}")
        log.info("kafka listener on %s", self.address)

    def _sweep(self) -> None:
        """Drop the connections that started a frame more than ``frame_timeout_s`` ago and
        have not completed it; runs on the loop, again every quarter of the timeout (1 s at
        most)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in self._open:
            since = conn.reading_since
            if since is not None and now - since >= self.frame_timeout_s:
                log.warning("kafka: %s did not complete a frame; disconnecting", conn.peer)
                conn.abort()
        loop.call_later(min(self.frame_timeout_s / 4, 1.0), self._sweep)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        if self.tls.client_ca is not None:
            context.load_verify_locations(self.tls.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def reload_tls(self) -> bool:
        """Read the certificate, key and client CA again (SIGHUP); new connections use
        them, open ones keep theirs. Unreadable files: logged, the current ones stay."""
        if self.tls is None or self._ssl is None:
            return False
        try:
            self._ssl_context()  # all files readable and matching, before touching the live one
            self._ssl.load_cert_chain(self.tls.cert, self.tls.key)
            if self.tls.client_ca is not None:
                self._ssl.load_verify_locations(self.tls.client_ca)
        except (OSError, ssl.SSLError) as exc:
            log.error("kafka listener: TLS reload failed, keeping the current certificate: %s", exc)
            return False
        log.info("kafka listener: TLS certificate reloaded from %s", self.tls.cert)
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, close every connection, stop the loop and the pool. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [c.task for c in self._open if isinstance(c.task, asyncio.Task)]
            for conn in list(self._open):
                conn.abort()  # cancels the request in hand, if any
            if tasks:
                await asyncio.wait(tasks, timeout=timeout_s)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout_s + 1)
        except Exception:
            log.exception("kafka listener: shutdown did not finish cleanly")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- connections -----------------------------------------------------------------------

    def _new_connection(self) -> KafkaConnection:
        return KafkaConnection(
            self._dispatch,
            max_request_bytes=self.max_request_bytes,
            gate=self.request_gate,
            registry=self._open,
            authenticated=self.store is None,
            principal_of=_certificate_principal,
        )

    def _dispatch(
        self, frame: bytes, conn: KafkaConnection
    ) -> Answer | Coroutine[Any, Any, Answer] | parked_fetch.ParkedRead:
        """The answer to one request frame: at once when its handler is synchronous (or
        the request is refused), else a coroutine that the connection runs as a task, or
        a one-partition Fetch parked without one (``parked_fetch.py``)."""
        if conn.raw_sasl:
            return self._raw_sasl(frame, conn)
        peer = conn.peer
        try:
            api_key, api_version, correlation_id = wire.peek_header(frame)
        except FrameError:
            return b"", False
        try:
            req = wire.parse_request(frame)
        except UnsupportedVersion as exc:
            log.info("kafka: %s: %s", peer, exc)
            return self._unsupported(api_key, api_version, correlation_id)
        except FrameError as exc:
            log.warning("kafka: %s: %s; disconnecting", peer, exc)
            return b"", False
        if not conn.authenticated and api_key not in _BEFORE_AUTHENTICATION:
            log.warning("kafka: %s sent API %d before authenticating; disconnecting", peer, api_key)
            return b"", False
        if api_key in (wire.SASL_HANDSHAKE, wire.SASL_AUTHENTICATE):
            return self._sasl(req, conn)
        inline = self._inline.get(api_key)
        handler = self._handlers.get(api_key)
        if inline is None and handler is None:
            return self._unsupported(api_key, api_version, correlation_id)
        if conn.principal:
            req = dataclasses.replace(req, principal=conn.principal)
            throttle = self.throttle
            if throttle is not None and throttle.quotas.active:
                return self._respond_throttled(req, frame, conn.principal, throttle)
        if inline is not None:
            return _answer(req, inline(req))
        assert handler is not None
        if api_key == wire.FETCH:
            where = parkable(req)
            if (
                where is not None
                and self.apis.access.refused(req.principal, "topic", where[0], "read") is None
            ):
                return parked_fetch.start(
                    req, conn, where, self.apis.fetch_handler, self.apis.handoff, self._fetched
                )
        return self._respond(req, handler)

    def _fetched(
        self, req: Request, outcomes: list[FetchOutcome]
    ) -> Answer | Coroutine[Any, Any, Answer]:
        """A parked Fetch's answer (``parked_fetch.py``): at once, or converted on the pool
        when its records are many (as ``LogApis.fetch``)."""
        if sum(len(o.records) for o in outcomes if o.records) <= INLINE_FETCH_BYTES:
            return _answer(req, self.apis.fetch_response(outcomes))
        return self._fetched_in_pool(req, outcomes)

    async def _fetched_in_pool(self, req: Request, outcomes: list[FetchOutcome]) -> Answer:
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(self.pool, self.apis.fetch_response, outcomes)
        return _answer(req, body)

    async def _respond(self, req: Request, handler: Handler) -> Answer:
        return _answer(req, await handler(req))

    async def _respond_throttled(
        self, req: Request, frame: bytes, principal: str, throttle: Throttle
    ) -> Answer:
        held = throttle.held_for(principal)
        if held:
            await asyncio.sleep(held)
        inline = self._inline.get(req.api_key)
        body = inline(req) if inline is not None else await self._handlers[req.api_key](req)
        body = _throttled(body, _charge(throttle, principal, req.api_key, frame, body))
        return _answer(req, body)

    # -- SASL ------------------------------------------------------------------------------

    async def _sasl(self, req: Request, conn: KafkaConnection) -> Answer:
        if self.store is None:  # SASL APIs are only listed with --auth
            return self._unsupported(req.api_key, req.api_version, req.correlation_id)
        cls = wire.response_class(req.api_key, req.api_version)
        if req.api_key == wire.SASL_HANDSHAKE:
            if conn.sasl is not None or conn.authenticated:
                code = ErrorCode.illegal_sasl_state
            else:
                chosen = SaslSession(self.store)
                code = ErrorCode.none
                if chosen.choose(req.body.mechanism):
                    conn.sasl = chosen
                    conn.raw_sasl = req.api_version == 0
                else:
                    code = ErrorCode.unsupported_sasl_mechanism
            body = build(cls, error_code=code, mechanisms=MECHANISMS)
            frame = wire.encode_response(req.api_key, req.api_version, req.correlation_id, body)
            return frame, code == ErrorCode.none
        session = conn.sasl
        try:
            if session is None or conn.raw_sasl:
                raise SaslFailed("SaslAuthenticate before SaslHandshake")
            answer = await asyncio.get_running_loop().run_in_executor(
                self.pool, session.step, bytes(req.body.auth_bytes)
            )
        except SaslFailed as exc:
            log.warning("kafka: %s: SASL authentication failed: %s", conn.peer, exc)
            body = build(
                cls,
                error_code=ErrorCode.sasl_authentication_failed,
                error_message=str(exc),
                auth_bytes=b"",
            )
            return wire.encode_response(
                req.api_key, req.api_version, req.correlation_id, body
            ), False
        self._authenticated(conn, session)
        body = build(cls, error_code=ErrorCode.none, auth_bytes=answer, session_lifetime=0)
        return wire.encode_response(req.api_key, req.api_version, req.correlation_id, body), True

    async def _raw_sasl(self, token: bytes, conn: KafkaConnection) -> Answer:
        """A bare token after a v0 SaslHandshake; the answer is a bare size-prefixed token."""
        session = conn.sasl
        assert session is not None
        try:
            answer = await asyncio.get_running_loop().run_in_executor(
                self.pool, session.step, token
            )
        except SaslFailed as exc:
            log.warning("kafka: %s: SASL authentication failed: %s", conn.peer, exc)
            return b"", False
        self._authenticated(conn, session)
        return wire.SIZE.pack(len(answer)) + answer, True

    @staticmethod
    def _authenticated(conn: KafkaConnection, session: SaslSession) -> None:
        if session.done:
            assert session.principal is not None
            conn.principal = session.principal
            conn.authenticated = True
            conn.raw_sasl = False

    def _unsupported(self, api_key: int, api_version: int, correlation_id: int) -> Answer:
        if api_key == wire.API_VERSIONS:
            # Kafka's rule: answer in v0 with the error and the versions, so the client
            # can retry with one it shares.
            mod = wire.response_module(wire.API_VERSIONS, 0)
            keys = tuple(
                build(mod.ApiVersion, api_key=k, min_version=lo, max_version=hi)
                for k, (lo, hi) in sorted(wire.SUPPORTED.items())
            )
            body = build(
                mod.ApiVersionsResponse, error_code=ErrorCode.unsupported_version, api_keys=keys
            )
            return wire.encode_response(wire.API_VERSIONS, 0, correlation_id, body), True
        # A body we cannot shape for the client: a bare error code, then close.
        return wire.encode_raw_response(correlation_id, b"\x00\x23"), False


def _answer(req: Request, body: Any) -> Answer:
    """The response frame for ``body`` (none for a Produce with acks=0)."""
    if req.api_key == wire.PRODUCE and int(req.body.acks) == 0:
        return b"", True
    return wire.encode_response(req.api_key, req.api_version, req.correlation_id, body), True


def _charge(throttle: Throttle, principal: str, api_key: int, frame: bytes, body: Any) -> float:
    """The throttle (s) for one answered request: the frame's bytes count as produced for a
    Produce, the answer's record bytes as fetched for a Fetch."""
    if api_key == wire.PRODUCE:
        return throttle.charge(principal, produce_bytes=len(frame))
    if api_key == wire.FETCH:
        fetched = sum(records_size(p.records) for topic in body.responses for p in topic.partitions)
        return throttle.charge(principal, fetch_bytes=fetched)
    return throttle.charge(principal)


def _throttled(body: Any, wait_s: float) -> Any:
    """``body`` with ``throttle_time_ms`` set, when it has the field (v0 answers do not)."""
    if not wait_s or not hasattr(body, "throttle_time"):
        return body
    wait_ms = min(math.ceil(wait_s * 1000), 2**31 - 1)
    return dataclasses.replace(body, throttle_time=datetime.timedelta(milliseconds=wait_ms))


def _certificate_principal(cert: dict[str, Any] | None) -> str:
    """The client certificate's CN, else its first DNS name ("" without one)."""
    if not cert:
        return ""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS":
            return str(value)
    return ""
