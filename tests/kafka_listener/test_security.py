"""SASL (PLAIN, SCRAM-SHA-256/512), TLS and ACLs on the Kafka listener, with confluent-kafka
and kcat against a real broker process started with --auth --acls (and the dev TLS set)."""

from __future__ import annotations

import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import confluent_kafka as ck
import confluent_kafka.admin
import pytest

from logstream.broker.security.acl_log import offline_acl_store
from logstream.broker.security.acls import Acl
from logstream.broker.security.credentials import CredentialStore
from logstream.cli.certs import make_dev_certs
from tests.kafka_listener.conftest import KafkaBroker, start_broker, stop_broker, wait_until

TOPIC = "secured"
pytestmark = pytest.mark.slow


@dataclass
class Secured:
    broker: KafkaBroker
    tokens: dict[str, str]
    ca: Path | None


def _prepare(data: Path) -> dict[str, str]:
    """Users and rules written before the broker starts (as an operator would offline)."""
    store = CredentialStore(data)
    tokens = {name: store.add(name) for name in ("alice", "bob", "admin")}
    with offline_acl_store(data) as acls:
        acls.add(
            [
                Acl.checked("alice", "topic", TOPIC, operation="write"),
                Acl.checked("alice", "topic", TOPIC, operation="read"),
                Acl.checked("alice", "group", "g-", pattern="prefix", operation="read"),
                Acl.checked("bob", "topic", TOPIC, operation="read"),  # no write
                Acl.checked("bob", "group", "g-", pattern="prefix", operation="read"),
            ]
        )
    return tokens


def _start(tmp: Path, tls: bool) -> Secured:
    data = tmp / "data"
    tokens = _prepare(data)
    extra = ["--auth", "--acls", "--super-users", "admin", "--auto-create-topics"]
    ca = None
    if tls:
        certs = make_dev_certs(tmp / "certs")
        ca = certs["ca"]
        extra += ["--tls-cert", str(certs["server"]), "--tls-key", str(certs["server_key"])]
    env = Secured(start_broker(data, *extra), tokens, ca)
    # The topic is created over the listener by the super user (CreateTopics under SASL).
    admin = ck.admin.AdminClient(_conf(env, "admin", "SCRAM-SHA-256"))
    futures = admin.create_topics([ck.admin.NewTopic(TOPIC, 1)], operation_timeout=10)
    futures[TOPIC].result(20)
    return env


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    env = _start(tmp_path_factory.mktemp("sasl-plaintext"), tls=False)
    try:
        yield env
    finally:
        stop_broker(env.broker)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    env = _start(tmp_path_factory.mktemp("sasl-ssl"), tls=True)
    try:
        yield env
    finally:
        stop_broker(env.broker)


def _conf(env: Secured, user: str, mechanism: str, password: str | None = None) -> dict:
    conf = {
        "bootstrap.servers": env.broker.kafka,
        "security.protocol": "SASL_SSL" if env.ca else "SASL_PLAINTEXT",
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password if password is not None else env.tokens[user],
    }
    if env.ca:
        conf["ssl.ca.location"] = str(env.ca)
    return conf


def _produce(conf: dict, values: list[bytes]) -> list[ck.KafkaError | None]:
    reports: list[ck.KafkaError | None] = []
    producer = ck.Producer({**conf, "linger.ms": 0, "message.timeout.ms": 10_000})
    for v in values:
        producer.produce(TOPIC, v, on_delivery=lambda err, _msg: reports.append(err))
    producer.flush(20)
    return reports


def _consume(conf: dict, want: int) -> list[bytes]:
    consumer = ck.Consumer(
        {**conf, "group.id": f"g-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([TOPIC])
    got: list[bytes] = []
    try:
        wait_until(
            lambda: (
                got.extend(m.value() for m in consumer.consume(100, 0.5) if not m.error())
                or len(got) >= want
            ),
            timeout=30,
            what=f"{want} records",
        )
    finally:
        consumer.close()
    return got


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_good_credentials_produce_and_consume(plain: Secured, mechanism: str) -> None:
    conf = _conf(plain, "alice", mechanism)
    values = [f"{mechanism}-{i}".encode() for i in range(5)]
    assert _produce(conf, values) == [None] * 5
    assert set(values) <= set(
        _consume(conf, 5 + 5 * ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].index(mechanism))
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_bad_credentials_fail_cleanly(plain: Secured, mechanism: str) -> None:
    errors: list[ck.KafkaError] = []
    conf = _conf(plain, "alice", mechanism, password=plain.tokens["alice"] + "x")
    producer = ck.Producer({**conf, "error_cb": errors.append})
    wait_until(
        lambda: (
            producer.poll(0.2),
            any(e.code() == ck.KafkaError._AUTHENTICATION for e in errors),
        )[1],
        timeout=20,
        what="an authentication error",
    )
    # the listener keeps serving the others
    assert _produce(_conf(plain, "alice", "SCRAM-SHA-256"), [b"after"]) == [None]


def test_unknown_user_fails_like_a_wrong_password(plain: Secured) -> None:
    errors: list[ck.KafkaError] = []
    conf = _conf(plain, "mallory", "SCRAM-SHA-256", password=plain.tokens["alice"])
    producer = ck.Producer({**conf, "error_cb": errors.append})
    wait_until(
        lambda: (
            producer.poll(0.2),
            any(e.code() == ck.KafkaError._AUTHENTICATION for e in errors),
        )[1],
        timeout=20,
        what="an authentication error",
    )


def test_a_principal_without_write_gets_topic_authorization_failed(plain: Secured) -> None:
    reports = _produce(_conf(plain, "bob", "SCRAM-SHA-256"), [b"not allowed"])
    assert [e.code() if e else None for e in reports] == [ck.KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_topics_a_principal_may_not_describe_are_left_out(plain: Secured) -> None:
    alice = ck.admin.AdminClient(_conf(plain, "alice", "SCRAM-SHA-256"))
    assert TOPIC in alice.list_topics(timeout=10).topics
    futures = alice.create_topics([ck.admin.NewTopic("not-alices", 1)], operation_timeout=10)
    with pytest.raises(ck.KafkaException) as refused:
        futures["not-alices"].result(20)
    assert refused.value.args[0].code() == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED
    admin = ck.admin.AdminClient(_conf(plain, "admin", "SCRAM-SHA-256"))
    admin.create_topics([ck.admin.NewTopic("admins-only", 1)])["admins-only"].result(20)
    assert "admins-only" in admin.list_topics(timeout=10).topics  # a super user sees all
    assert "admins-only" not in alice.list_topics(timeout=10).topics


def test_no_request_before_authentication(plain: Secured) -> None:
    """A client that skips SASL is disconnected on its first other request."""
    errors: list[ck.KafkaError] = []
    producer = ck.Producer({"bootstrap.servers": plain.broker.kafka, "error_cb": errors.append})
    with pytest.raises(ck.KafkaException):
        producer.list_topics(timeout=3)


def test_sasl_ssl_with_confluent_kafka(tls: Secured) -> None:
    conf = _conf(tls, "alice", "SCRAM-SHA-256")
    assert _produce(conf, [b"over tls"]) == [None]
    assert b"over tls" in _consume(conf, 1)


def test_sasl_ssl_with_kcat(tls: Secured, kcat: str) -> None:
    """PLAIN: Debian's kcat links librdkafka 2.0, whose SCRAM repeats the client nonce in
    its final message (fixed in librdkafka 2.6.1); this listener, like Kafka 4, refuses it."""
    assert tls.ca is not None
    options = [
        "-b", tls.broker.kafka,
        "-X", "security.protocol=SASL_SSL",
        "-X", "sasl.mechanisms=PLAIN",
        "-X", "sasl.username=alice",
        "-X", f"sasl.password={tls.tokens['alice']}",
        "-X", f"ssl.ca.location={tls.ca}",
    ]  # fmt: skip
    subprocess.run(
        [kcat, *options, "-P", "-t", TOPIC], input=b"from kcat\n", check=True, timeout=30
    )
    out = subprocess.run(
        [kcat, *options, "-C", "-t", TOPIC, "-o", "beginning", "-e", "-q"],
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert b"from kcat" in out.stdout
    bob = [*options[:-6], "-X", "sasl.username=bob", "-X", f"sasl.password={tls.tokens['bob']}"]
    denied = subprocess.run(
        [kcat, *bob, *options[-2:], "-P", "-t", TOPIC],
        input=b"from bob\n",
        capture_output=True,
        timeout=30,
    )
    assert denied.returncode != 0
    assert b"authoriz" in denied.stderr.lower()


# -- raw frames: the v0 handshake (bare SASL tokens) and refusals, on an in-process listener


@pytest.fixture
def sasl_listener(tmp_path: Path) -> Iterator[tuple[object, str]]:
    from types import SimpleNamespace

    from logstream.kafka import KafkaListener
    from logstream.testing.broker import run_broker

    store = CredentialStore(tmp_path / "users")
    token = store.add("alice")
    with run_broker(tmp_path / "broker") as running:
        security = SimpleNamespace(store=store, tls=None, acls=None)
        listener = KafkaListener(running.broker, "127.0.0.1:0", security=security)  # type: ignore[arg-type]
        listener.start()
        try:
            yield listener, token
        finally:
            listener.stop()


def _request(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    head = struct.pack(">hhih", api_key, version, correlation_id, 1) + b"t"
    return struct.pack(">i", len(head) + len(body)) + head + body


def _string(value: str) -> bytes:
    return struct.pack(">h", len(value)) + value.encode()


def _metadata_v1(correlation_id: int) -> bytes:
    return _request(3, 1, correlation_id, struct.pack(">i", -1))  # all topics


@pytest.mark.parametrize("good", [True, False])
def test_v0_handshake_then_a_bare_plain_token(sasl_listener, good: bool) -> None:
    from tests.kafka_listener.test_bad_input import assert_closed, read_frame

    listener, token = sasl_listener
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(_request(17, 0, 1, _string("PLAIN")))
        frame = read_frame(sock)
        correlation_id, error = struct.unpack_from(">ih", frame)
        assert (correlation_id, error) == (1, 0)
        secret = token if good else token + "x"
        plain = f"\0alice\0{secret}".encode()
        sock.sendall(struct.pack(">i", len(plain)) + plain)
        if not good:
            assert_closed(sock)
            return
        assert read_frame(sock) == b""  # PLAIN's empty server token
        sock.sendall(_metadata_v1(2))
        assert struct.unpack_from(">i", read_frame(sock))[0] == 2


def test_an_unknown_mechanism_is_answered_with_the_list(sasl_listener) -> None:
    from tests.kafka_listener.test_bad_input import read_frame

    listener, _ = sasl_listener
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(_request(17, 1, 1, _string("GSSAPI")))
        frame = read_frame(sock)
        correlation_id, error, count = struct.unpack_from(">ihi", frame)
        assert (correlation_id, error, count) == (1, 33, 3)  # UNSUPPORTED_SASL_MECHANISM
        assert b"SCRAM-SHA-512" in frame


def test_metadata_before_authentication_closes(sasl_listener) -> None:
    from tests.kafka_listener.test_bad_input import assert_closed

    listener, _ = sasl_listener
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(_metadata_v1(1))
        assert_closed(sock)


def test_mutual_tls_principal_is_the_certificate_cn(tmp_path: Path) -> None:
    """--tls-client-ca without --auth: the client certificate's CN is the principal."""
    data = tmp_path / "data"
    certs = make_dev_certs(tmp_path / "certs", client_name="alice")
    with offline_acl_store(data) as acls:
        acls.add(
            [
                Acl.checked("alice", "topic", "mtls", operation="create"),
                Acl.checked("alice", "topic", "mtls", operation="write"),
                Acl.checked("alice", "topic", "other", operation="read"),  # describe, no write
            ]
        )
    broker = start_broker(
        data,
        "--acls",
        "--tls-cert", str(certs["server"]),
        "--tls-key", str(certs["server_key"]),
        "--tls-client-ca", str(certs["ca"]),
        "--auto-create-topics",
    )  # fmt: skip
    try:
        conf = {
            "bootstrap.servers": broker.kafka,
            "security.protocol": "SSL",
            "ssl.ca.location": str(certs["ca"]),
            "ssl.certificate.location": str(certs["client"]),
            "ssl.key.location": str(certs["client_key"]),
        }
        admin = ck.admin.AdminClient(conf)
        admin.create_topics([ck.admin.NewTopic("mtls", 1)])["mtls"].result(20)
        reports: list[ck.KafkaError | None] = []
        producer = ck.Producer({**conf, "linger.ms": 0, "message.timeout.ms": 10_000})
        producer.produce("mtls", b"by certificate", on_delivery=lambda e, _m: reports.append(e))
        producer.flush(20)
        assert reports == [None]
        no_cert = {k: v for k, v in conf.items() if not k.startswith("ssl.c") and "key" not in k}
        with pytest.raises(ck.KafkaException):
            ck.admin.AdminClient({**no_cert, "ssl.ca.location": str(certs["ca"])}).list_topics(
                timeout=3
            )
    finally:
        stop_broker(broker)


def _handshake(port: int, ca: Path) -> str:
    """The server certificate's CN after a TLS handshake trusting ``ca`` (raises if not)."""
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls_sock,
    ):
        subject = dict(x[0] for x in tls_sock.getpeercert()["subject"])
        return str(subject["commonName"])


def test_sighup_reload_gives_new_connections_the_new_certificate(tmp_path: Path) -> None:
    import shutil
    import ssl

    from logstream.broker.config import BrokerConfig
    from logstream.broker.security.edge import EdgeSecurity
    from logstream.kafka import KafkaListener
    from logstream.testing.broker import run_broker

    first = make_dev_certs(tmp_path / "first")
    second = make_dev_certs(tmp_path / "second")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(first["server"], cert)
    shutil.copy(first["server_key"], key)
    security = EdgeSecurity(
        BrokerConfig(data_dir=tmp_path / "edge", tls_cert=str(cert), tls_key=str(key))
    )
    with run_broker(tmp_path / "broker") as running:
        listener = KafkaListener(running.broker, "127.0.0.1:0", security=security)
        listener.start()
        try:
            assert _handshake(listener.port, first["ca"]) == "localhost"
            cert.write_text("not a certificate")
            security.reload()  # what SIGHUP does
            assert _handshake(listener.port, first["ca"]) == "localhost"  # kept
            shutil.copy(second["server"], cert)
            shutil.copy(second["server_key"], key)
            security.reload()
            assert _handshake(listener.port, second["ca"]) == "localhost"
            with pytest.raises(ssl.SSLCertVerificationError):
                _handshake(listener.port, first["ca"])
        finally:
            listener.stop()
