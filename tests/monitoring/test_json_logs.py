"""``--log-format json``: one JSON object per stderr line, stable keys, named events."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

from logstream import Admin, Producer
from logstream.broker.http.logs import JsonFormatter
from logstream.broker.security.credentials import CredentialStore
from logstream.broker.security.quotas import Quota, QuotaFile
from logstream.client import AclBinding
from logstream.testing.broker import BrokerProcess


def _events(output: str) -> list[dict[str, Any]]:
    """Every JSON line (the start lines on stdout are plain text and skipped)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _wait_for_event(
    proc: BrokerProcess, name: str, timeout: float = 15.0, skip: int = 0
) -> dict[str, Any]:
    """The first ``name`` event after the first ``skip`` JSON lines."""
    deadline = time.monotonic() + timeout
    while True:
        for e in _events(proc.output())[skip:]:
            if e["event"] == name:
                return e
        if time.monotonic() > deadline:
            raise AssertionError(f"no {name} event in:\n{proc.output()}")
        time.sleep(0.05)


def test_serve_logs_json_events(tmp_path: Path) -> None:
    proc = BrokerProcess(tmp_path / "data", log_format="json").start()
    try:
        admin = Admin(proc.address)
        admin.create_topic("audit", partitions=2, config={"segment_bytes": 4096})
        producer = Producer(proc.address, linger_ms=0)
        for _ in range(60):
            producer.send("audit", b"x" * 200, partition=0).result(10)
        producer.close()
        rolled = _wait_for_event(proc, "segment_rolled")
        admin.delete_topic("audit")
        deleted = _wait_for_event(proc, "topic_deleted")
        admin.close()
    finally:
        assert proc.terminate() == 0
    events = _events(proc.output())
    assert events, proc.output()
    for e in events:
        assert {"ts", "level", "logger", "event", "message"} <= set(e)
        assert e["ts"].endswith("Z")
    by_name = {e["event"]: e for e in events}
    opened = by_name["data_dir_opened"]
    assert opened["clean"] is True and opened["partitions_recovered"] == 0
    assert by_name["broker_started"]["address"] == proc.address
    created = by_name["topic_created"]
    assert (created["topic"], created["partitions"]) == ("audit", 2)
    assert (rolled["topic"], rolled["partition"]) == ("audit", 0) and rolled["segments"] >= 2
    assert deleted["topic"] == "audit"
    assert "broker_stopping" in by_name and "broker_stopped" in by_name


def test_recovery_figures_after_a_crash(tmp_path: Path) -> None:
    proc = BrokerProcess(tmp_path / "data", log_format="json").start()
    Admin(proc.address).create_topic("crash", partitions=1)
    producer = Producer(proc.address, linger_ms=0)
    producer.send("crash", b"v").result(10)
    producer.close()
    proc.kill()
    first_run = len(_events(proc.output()))
    proc.start()
    try:
        opened = _wait_for_event(proc, "data_dir_opened", skip=first_run)
    finally:
        proc.terminate()
    assert opened["clean"] is False
    assert opened["partitions_recovered"] >= 1
    assert isinstance(opened["duration_s"], float)


def test_formatter_keeps_fixed_keys_and_exceptions() -> None:
    logger = logging.getLogger("logstream.test")
    record = logger.makeRecord(
        "logstream.test",
        logging.ERROR,
        __file__,
        1,
        "boom %d",
        (1,),
        None,
        extra={"event": "flush_failed", "fields": {"topic": "t", "level": "shadowed"}},
    )
    try:
        raise ValueError("disk")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "flush_failed" and line["message"] == "boom 1"
    assert line["topic"] == "t"
    assert line["level"] == "ERROR"  # a field may not overwrite a fixed key
    assert "ValueError: disk" in line["exception"]


def test_acl_user_and_quota_changes_are_events(tmp_path: Path) -> None:
    """Online changes (Security service) and offline ones read on SIGHUP each log one
    event with the principal and the resource; no token ever reaches the log."""
    data = tmp_path / "data"
    admin_token = CredentialStore(data).add("admin")
    proc = BrokerProcess(data, log_format="json", auth=True, acls=True, super_users="admin").start()
    try:
        rule = AclBinding("alice", "topic", "orders", "prefix", "read", "allow")
        with Admin(proc.address, token=admin_token) as admin:
            assert admin.create_acls([rule]) == 1
            added = _wait_for_event(proc, "acl_added")
            alice_token = admin.create_user("alice")
            created = _wait_for_event(proc, "user_added")
            admin.delete_acls(AclBinding(principal="alice"))
            removed = _wait_for_event(proc, "acl_removed")
        seen = len(_events(proc.output()))
        # offline: a user and a quota written to the files, then SIGHUP
        carol_token = CredentialStore(data).add("carol")
        QuotaFile(data).write({"alice": Quota(produce_bytes_per_s=1_000_000)})
        proc.proc.send_signal(signal.SIGHUP)
        reloaded_user = _wait_for_event(proc, "user_added", skip=seen)
        quota = _wait_for_event(proc, "quota_set", skip=seen)
    finally:
        assert proc.terminate() == 0
    expected = {
        "principal": "alice",
        "resource_type": "topic",
        "name": "orders",
        "pattern": "prefix",
        "operation": "read",
        "permission": "allow",
        "source": "rpc",
    }
    assert {k: added[k] for k in expected} == expected
    assert {k: removed[k] for k in expected} == expected
    assert (created["user"], created["source"]) == ("alice", "rpc")
    assert (reloaded_user["user"], reloaded_user["source"]) == ("carol", "reload")
    assert quota["principal"] == "alice" and quota["produce_bytes_per_s"] == 1_000_000
    output = proc.output()
    for token in (admin_token, alice_token, carol_token):
        assert token.rpartition(".")[2] not in output
