"""TLS and mutual TLS on the broker port: what works, and each refusal on both sides."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from pki import Pki

from logstream.client import Admin, Consumer, GroupAdmin, Producer
from logstream.errors import BrokerNotAvailableError, InvalidConfigError
from logstream.testing.broker import BrokerProcess, run_broker

GRPC_LOG = {"GRPC_VERBOSITY": "INFO"}  # the C core logs refused handshakes at INFO


def _tls(pki: Pki, **extra: Any) -> dict[str, Any]:
    return {"tls_cert": str(pki.server), "tls_key": str(pki.server_key), **extra}


def _refusal(address: str, **security: Any) -> str:
    admin = Admin(address, request_timeout_ms=5000, **security)
    try:
        with pytest.raises(BrokerNotAvailableError) as info:
            admin.list_topics()
    finally:
        admin.close()
    return str(info.value)


def _wait_for_log(proc: BrokerProcess, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = proc.output()
        if text in out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the broker log:\n{proc.output()}")


def test_every_client_works_over_tls(tmp_path: Path, pki: Pki) -> None:
    with run_broker(tmp_path / "data", **_tls(pki)) as b:
        admin = Admin(b.address, ca=pki.ca)
        admin.create_topic("orders", partitions=2)
        producer = Producer(b.address, ca=pki.ca)
        producer.send("orders", value=b"v1", partition=0).result(10)
        producer.close()
        consumer = Consumer(b.address, ca=pki.ca, auto_offset_reset="earliest")
        consumer.assign([("orders", 0)])
        got = consumer.poll(timeout=10.0)
        consumer.close()
        assert [r.value for r in got] == [b"v1"]
        groups = GroupAdmin(b.address, ca=pki.ca)
        assert groups.list_groups() == []
        groups.close()
        admin.close()


def test_mutual_tls_accepts_a_certificate_the_ca_signed(tmp_path: Path, pki: Pki) -> None:
    with run_broker(tmp_path / "data", **_tls(pki, tls_client_ca=str(pki.ca))) as b:
        admin = Admin(b.address, ca=pki.ca, cert=pki.client, key=pki.client_key)
        assert admin.list_topics() == []
        admin.close()


# The client is the side that refuses in these two: the broker only sees the connection go
# (gRPC's C core does not log a handshake the peer aborted), so only the client's error is
# checked; after it, the broker still serves clients that trust it.


def test_client_with_the_wrong_ca_refuses_the_broker(tmp_path: Path, pki: Pki) -> None:
    with run_broker(tmp_path / "data", **_tls(pki)) as b:
        message = _refusal(b.address, ca=pki.other_ca)
        assert "CERTIFICATE_VERIFY_FAILED" in message
        assert "unable to get local issuer certificate" in message
        admin = Admin(b.address, ca=pki.ca)
        assert admin.list_topics() == []
        admin.close()


def test_client_refuses_an_expired_broker_certificate(tmp_path: Path, pki: Pki) -> None:
    config = {"tls_cert": str(pki.expired_server), "tls_key": str(pki.expired_server_key)}
    with run_broker(tmp_path / "data", **config) as b:
        message = _refusal(b.address, ca=pki.ca)
        assert "certificate has expired" in message


def test_plaintext_client_against_a_tls_port(tmp_path: Path, pki: Pki) -> None:
    with BrokerProcess(tmp_path / "data", env=GRPC_LOG, **_tls(pki)) as proc:
        message = _refusal(proc.address)
        assert "connect with tls=True / --tls" in message
        _wait_for_log(proc, "WRONG_VERSION_NUMBER")


def test_tls_client_against_a_plaintext_port(tmp_path: Path, pki: Pki) -> None:
    with run_broker(tmp_path / "data") as b:
        message = _refusal(b.address, ca=pki.ca)
        assert "does not speak TLS" in message


@pytest.mark.parametrize(
    "case",
    ["no certificate", "another CA's certificate", "expired certificate"],
)
def test_mutual_tls_refuses_bad_client_certificates(tmp_path: Path, pki: Pki, case: str) -> None:
    security: dict[str, Any] = {
        "no certificate": {"ca": pki.ca},
        "another CA's certificate": {
            "ca": pki.ca,
            "cert": pki.other_client,
            "key": pki.other_client_key,
        },
        "expired certificate": {
            "ca": pki.ca,
            "cert": pki.expired_client,
            "key": pki.expired_client_key,
        },
    }[case]
    server_says = {
        "no certificate": "PEER_DID_NOT_RETURN_A_CERTIFICATE",
        "another CA's certificate": "unable to get local issuer certificate",
        "expired certificate": "certificate has expired",
    }[case]
    config = _tls(pki, tls_client_ca=str(pki.ca))
    with BrokerProcess(tmp_path / "data", env=GRPC_LOG, **config) as proc:
        message = _refusal(proc.address, **security)
        assert "client certificate" in message
        _wait_for_log(proc, server_says)


def test_sighup_reloads_the_certificate(tmp_path: Path, pki: Pki) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(pki.server, cert)
    shutil.copy(pki.server_key, key)
    config = {"tls_cert": str(cert), "tls_key": str(key)}
    with BrokerProcess(tmp_path / "data", **config) as proc:
        old = Admin(proc.address, ca=pki.ca)
        assert old.list_topics() == []
        shutil.copy(pki.other_server, cert)
        shutil.copy(pki.other_server_key, key)
        assert proc.proc is not None
        proc.proc.send_signal(1)  # SIGHUP
        _wait_for_log(proc, "TLS certificate reloaded")
        new = Admin(proc.address, ca=pki.other_ca)
        assert new.list_topics() == []
        assert "CERTIFICATE_VERIFY_FAILED" in _refusal(proc.address, ca=pki.ca)
        assert old.list_topics() == []  # a connection made before keeps its certificate
        old.close()
        new.close()


def test_sighup_with_unreadable_files_keeps_the_certificate(tmp_path: Path, pki: Pki) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(pki.server, cert)
    shutil.copy(pki.server_key, key)
    with BrokerProcess(tmp_path / "data", tls_cert=str(cert), tls_key=str(key)) as proc:
        cert.write_text("not a certificate")
        assert proc.proc is not None
        proc.proc.send_signal(1)
        _wait_for_log(proc, "TLS reload failed, keeping the current certificate")
        admin = Admin(proc.address, ca=pki.ca)
        assert admin.list_topics() == []
        admin.close()


def test_a_missing_certificate_file_refuses_the_start(tmp_path: Path, pki: Pki) -> None:
    with (
        pytest.raises(InvalidConfigError, match="cannot read TLS certificate"),
        run_broker(
            tmp_path / "data", tls_cert=str(tmp_path / "nope.pem"), tls_key=str(pki.server_key)
        ),
    ):
        pass


def test_client_certificate_without_its_key_is_refused(pki: Pki) -> None:
    with pytest.raises(InvalidConfigError, match="needs its key"):
        Admin("127.0.0.1:1", ca=pki.ca, cert=pki.client)
