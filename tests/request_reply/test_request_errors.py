"""A request the broker refuses fails at once with the broker's error, not at its timeout:
per batch (an error answer on the requests' stream, which otherwise answers nothing) and
for the whole stream (an ACL), against real brokers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from logstream import Admin, Requester, errors
from logstream.broker.security.credentials import CredentialStore
from logstream.client.acls import AclBinding
from logstream.testing.broker import BrokerProcess, run_broker


def test_a_request_too_large_for_its_topic_fails_at_once(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "data") as proc:
        topic = f"small-{uuid.uuid4().hex[:8]}"
        with Admin(proc.address) as admin:
            admin.create_topic(topic, partitions=1, config={"max_batch_bytes": 1024})
        with Requester(proc.address) as r:
            started = time.monotonic()
            with pytest.raises(errors.MessageTooLargeError):
                r.request(topic, b"x" * 4096, timeout=30)
            assert time.monotonic() - started < 10  # the error answer, not the timeout
            assert r.pending == 0
            with pytest.raises(errors.RequestTimeoutError):  # the stream still carries requests
                r.request(topic, b"small, nobody answers", timeout=0.3)


def test_a_request_without_write_permission_fails_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = CredentialStore(data)
    tokens = {name: store.add(name) for name in ("admin", "alice")}
    with run_broker(data, auth=True, acls=True, super_users="admin") as b:
        with Admin(b.address, token=tokens["admin"]) as admin:
            admin.create_topic("prices")
            admin.create_acls(
                [
                    AclBinding("alice", "topic", "_inbox.", "prefix", "read", "allow"),
                    AclBinding("alice", "topic", "prices", "literal", "read", "allow"),
                ]
            )
        with Requester(b.address, token=tokens["alice"]) as r:
            started = time.monotonic()
            with pytest.raises(errors.TopicAuthorizationFailedError):
                r.request("prices", b"may I?", timeout=30)
            assert time.monotonic() - started < 10
            assert r.pending == 0


def test_a_str_request_is_a_type_error_and_the_stream_carries_on(tmp_path: Path) -> None:
    # request("t", "hello") broke the request stream on the sender thread and came back as
    # UnknownServerError "Exception iterating requests!", naming nothing the caller did.
    with BrokerProcess(tmp_path / "data") as proc:
        Admin(proc.address).create_topic("echo-str")
        with Requester(proc.address) as r:
            with pytest.raises(TypeError, match="request value must be bytes or None, not str"):
                r.request("echo-str", "hello", timeout=5)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="request key must be bytes or None, not str"):
                r.request("echo-str", b"hello", key="k", timeout=5)  # type: ignore[arg-type]
            assert r.pending == 0
            with pytest.raises(errors.RequestTimeoutError):  # the stream still carries requests
                r.request("echo-str", b"nobody answers", timeout=0.3)
