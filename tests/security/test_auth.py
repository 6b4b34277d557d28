"""Token authentication (and client certificates as identity) at the broker's edge."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pki import Pki

from logstream.broker.security.credentials import CredentialStore
from logstream.client import Admin, Consumer, GroupAdmin, Producer
from logstream.errors import AuthenticationFailedError
from logstream.testing.broker import BrokerProcess, run_broker


def _token(data_dir: Path, name: str = "alice") -> str:
    return CredentialStore(data_dir).add(name)


def test_calls_without_a_token_are_refused(tmp_path: Path) -> None:
    _token(tmp_path / "data")
    with run_broker(tmp_path / "data", auth=True) as b:
        admin = Admin(b.address, token="")
        with pytest.raises(AuthenticationFailedError, match="no credentials"):
            admin.list_topics()
        admin.close()


def test_every_client_works_with_a_valid_token(tmp_path: Path) -> None:
    token = _token(tmp_path / "data")
    with run_broker(tmp_path / "data", auth=True) as b:
        admin = Admin(b.address, token=token)
        admin.create_topic("orders")
        producer = Producer(b.address, token=token)
        producer.send("orders", value=b"v1", partition=0).result(10)
        producer.close()
        consumer = Consumer(b.address, token=token, auto_offset_reset="earliest")
        consumer.assign([("orders", 0)])
        assert [r.value for r in consumer.poll(timeout=10.0)] == [b"v1"]
        consumer.close()
        groups = GroupAdmin(b.address, token=token)
        assert groups.list_groups() == []
        groups.close()
        admin.close()


def test_the_token_comes_from_the_environment(tmp_path: Path, monkeypatch: Any) -> None:
    token = _token(tmp_path / "data")
    monkeypatch.setenv("LOGSTREAM_TOKEN", token)
    with run_broker(tmp_path / "data", auth=True) as b:
        admin = Admin(b.address)
        assert admin.list_topics() == []
        admin.close()


@pytest.mark.parametrize(
    "bad",
    [
        "ls1.alice.wrong-secret",
        "ls1.mallory.wrong-secret",
        "not-a-token",
        "ls1.alice.",
    ],
)
def test_wrong_tokens_are_refused_and_never_echoed(tmp_path: Path, bad: str) -> None:
    _token(tmp_path / "data")
    with BrokerProcess(tmp_path / "data", auth=True) as proc:
        admin = Admin(proc.address, token=bad)
        with pytest.raises(AuthenticationFailedError) as info:
            admin.list_topics()
        admin.close()
        assert bad not in str(info.value)
        deadline = time.monotonic() + 10
        while "authentication failed" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "authentication failed" in proc.output()
        assert bad not in proc.output()


def test_health_checks_need_no_token(tmp_path: Path) -> None:
    with run_broker(tmp_path / "data", auth=True) as b, grpc.insecure_channel(b.address) as ch:
        answer = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_client_certificate_authenticates_under_mutual_tls(tmp_path: Path, pki: Pki) -> None:
    config = {
        "tls_cert": str(pki.server),
        "tls_key": str(pki.server_key),
        "tls_client_ca": str(pki.ca),
        "auth": True,
    }
    with run_broker(tmp_path / "data", **config) as b:
        admin = Admin(b.address, ca=pki.ca, cert=pki.client, key=pki.client_key, token="")
        assert admin.list_topics() == []
        bad = Admin(b.address, ca=pki.ca, cert=pki.client, key=pki.client_key, token="ls1.x.y")
        with pytest.raises(AuthenticationFailedError):
            bad.list_topics()  # a token, when sent, must be valid even with a certificate
        bad.close()
        admin.close()


@pytest.mark.serial  # timing-sensitive: run alone by `make test` (docs/decisions/0040)
def test_failed_logins_are_counted_and_slowed_down(tmp_path: Path) -> None:
    _token(tmp_path / "data")
    with run_broker(tmp_path / "data", auth=True) as b:
        admin = Admin(b.address, token="ls1.alice.wrong")
        took = []
        for _ in range(6):
            start = time.monotonic()
            with pytest.raises(AuthenticationFailedError):
                admin.list_topics()
            took.append(time.monotonic() - start)
        admin.close()
        assert b.server.security.auth.failed_logins == 6
        assert took[-1] >= 0.05 * 2**5 * 0.9  # doubling from 50 ms
        assert took[-1] > 4 * took[0]


def _count_verifications(broker: Any, monkeypatch: Any) -> list[int]:
    """A list that grows by one per scrypt check the broker's credential store makes."""
    store = broker.server.security.store
    calls: list[int] = []
    real = store.verify
    monkeypatch.setattr(store, "verify", lambda t: calls.append(1) or real(t))
    return calls


def test_a_verified_token_is_cached(tmp_path: Path, monkeypatch: Any) -> None:
    token = _token(tmp_path / "data")
    with run_broker(tmp_path / "data", auth=True) as b:
        calls = _count_verifications(b, monkeypatch)
        admin = Admin(b.address, token=token)
        for _ in range(20):
            admin.list_topics()
        admin.close()
        assert len(calls) == 1


def test_concurrent_calls_with_one_new_token_share_one_check(
    tmp_path: Path, monkeypatch: Any
) -> None:
    token = _token(tmp_path / "data")
    with run_broker(tmp_path / "data", auth=True) as b:
        calls = _count_verifications(b, monkeypatch)
        channel = grpc.insecure_channel(b.address)
        list_topics = channel.unary_unary(
            "/logstream.v1.Admin/ListTopics",
            request_serializer=None,
            response_deserializer=None,
        )
        md = (("authorization", f"Bearer {token}"),)
        futures = [list_topics.future(b"", metadata=md, timeout=30) for _ in range(16)]
        for future in futures:
            future.result()
        channel.close()
        assert len(calls) == 1


def test_removed_and_rotated_tokens_stop_working_after_reload(tmp_path: Path) -> None:
    data = tmp_path / "data"
    alice = _token(data, "alice")
    bob = _token(data, "bob")
    with run_broker(data, auth=True) as b:
        a, bb = Admin(b.address, token=alice), Admin(b.address, token=bob)
        assert a.list_topics() == [] and bb.list_topics() == []
        offline = CredentialStore(data)
        offline.remove("alice")
        new_bob = offline.add("bob", replace=True)
        b.server.reload_security()
        with pytest.raises(AuthenticationFailedError):
            a.list_topics()
        with pytest.raises(AuthenticationFailedError):
            bb.list_topics()
        nb = Admin(b.address, token=new_bob)
        assert nb.list_topics() == []
        for c in (a, bb, nb):
            c.close()


def test_the_credentials_file_holds_no_token_and_is_private(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "data")
    token = store.add("alice")
    secret = token.rpartition(".")[2]
    raw = store.path.read_text()
    assert secret not in raw and token not in raw
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.dir.stat().st_mode & 0o777 == 0o700
    assert CredentialStore(tmp_path / "data").verify(token) == "alice"


def test_a_damaged_credentials_file_refuses_the_start(tmp_path: Path) -> None:
    from logstream.errors import InvalidConfigError

    store = CredentialStore(tmp_path / "data")
    store.add("alice")
    store.path.write_text(store.path.read_text().replace('"alice"', '"alicf"'))
    with (
        pytest.raises(InvalidConfigError, match="damaged"),
        run_broker(tmp_path / "data", auth=True),
    ):
        pass


def test_producer_and_consumer_without_a_token_fail_fast(tmp_path: Path) -> None:
    token = _token(tmp_path / "data")
    with run_broker(tmp_path / "data", auth=True) as b:
        admin = Admin(b.address, token=token)
        admin.create_topic("t")
        admin.close()
        producer = Producer(b.address, token="", delivery_timeout_ms=8000)
        with pytest.raises(AuthenticationFailedError):
            producer.send("t", value=b"1", partition=0).result(10)
        producer.close()
        consumer = Consumer(b.address, token="", auto_offset_reset="earliest")
        consumer.assign([("t", 0)])
        with pytest.raises(AuthenticationFailedError):
            consumer.poll(timeout=5)
        consumer.close()
