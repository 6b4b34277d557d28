"""ACLs kept in the internal topic ``__acls``: durable across restarts and kill -9, written
offline before the broker starts, migrated from an older ``acls.json``, compacted by
snapshots, and closed to clients (no writes, reads need cluster describe)."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from logstream.broker.security.acl_log import (
    ACLS_TOPIC_CONFIG,
    SNAPSHOT_MIN_RECORDS,
    AclTopic,
    encode_rule_key,
    offline_acl_store,
    open_acl_store,
)
from logstream.broker.security.acls import ACLS_TOPIC, Acl
from logstream.broker.security.credentials import CredentialStore
from logstream.cli.main import main
from logstream.client import AclBinding, Admin, Consumer, Producer
from logstream.codec import encode_batch
from logstream.errors import (
    InternalTopicReadOnlyError,
    InvalidConfigError,
    TopicAuthorizationFailedError,
)
from logstream.storage import LogManager
from logstream.testing.broker import BrokerProcess, run_broker

ALICE_READS = AclBinding("alice", "topic", "orders", "literal", "read", "allow")
SECURED = {"auth": True, "acls": True, "super_users": "admin"}


def _tokens(data: Path) -> dict[str, str]:
    store = CredentialStore(data)
    return {name: store.add(name) for name in ("admin", "alice")}


def _alice_can_describe(address: str, token: str) -> bool:
    with Admin(address, token=token) as alice:
        try:
            alice.describe_topic("orders")
        except TopicAuthorizationFailedError:
            return False
        return True


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[BrokerProcess, dict[str, str]]]:
    data = tmp_path / "data"
    tokens = _tokens(data)
    with BrokerProcess(data, **SECURED) as proc:
        with Admin(proc.address, token=tokens["admin"]) as admin:
            admin.create_topic("orders")
        yield proc, tokens


def test_rules_survive_kill_9_right_after_the_call(broker) -> None:
    proc, tokens = broker
    with Admin(proc.address, token=tokens["admin"]) as admin:
        assert admin.create_acls([ALICE_READS]) == 1
    proc.restart(kill=True)
    assert _alice_can_describe(proc.address, tokens["alice"])
    with Admin(proc.address, token=tokens["admin"]) as admin:
        assert admin.list_acls() == [ALICE_READS]
        assert admin.delete_acls(AclBinding(principal="alice")) == [ALICE_READS]
    proc.restart(kill=True)
    assert not _alice_can_describe(proc.address, tokens["alice"])
    proc.restart()  # a clean stop too
    with Admin(proc.address, token=tokens["admin"]) as admin:
        assert admin.list_acls() == []
    assert not (proc.data_dir / "security" / "acls.json").exists()


def test_the_acl_topic_is_closed_to_clients(broker) -> None:
    proc, tokens = broker
    everything = AclBinding("alice", "topic", "*", "literal", "read", "allow")
    with Admin(proc.address, token=tokens["admin"]) as admin:
        admin.create_acls([everything])
        with pytest.raises(InternalTopicReadOnlyError):
            admin.delete_topic(ACLS_TOPIC)
    with (
        Producer(proc.address, token=tokens["admin"], retries=0) as producer,
        pytest.raises(InternalTopicReadOnlyError),
    ):
        producer.send(ACLS_TOPIC, value=b"forged", partition=0).result(10)
    alice = Consumer(proc.address, token=tokens["alice"], auto_offset_reset="earliest")
    alice.assign([(ACLS_TOPIC, 0)])
    with pytest.raises(TopicAuthorizationFailedError):  # a "*" topic rule is not enough
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alice.poll(timeout=0.2)
    alice.close()
    admin_reader = Consumer(proc.address, token=tokens["admin"], auto_offset_reset="earliest")
    admin_reader.assign([(ACLS_TOPIC, 0)])
    records = []
    deadline = time.monotonic() + 10
    while not records and time.monotonic() < deadline:
        records = list(admin_reader.poll(timeout=0.2))
    admin_reader.close()
    assert [r.key for r in records] == [encode_rule_key(Acl(**asdict(everything)))]


def test_offline_add_then_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tokens = _tokens(data)
    run = CliRunner().invoke
    rule = ["--principal", "alice", "--topic", "orders", "--operation", "read"]
    added = run(main, ["acl", "add", *rule, "--allow", "--data-dir", str(data)])
    assert added.exit_code == 0 and "added" in added.output, added.output
    again = run(main, ["acl", "add", *rule, "--allow", "--data-dir", str(data)])
    assert "already there" in again.output
    listed = run(main, ["acl", "list", "--data-dir", str(data)])
    assert listed.output.splitlines() == ["allow\talice\tread\ttopic:orders"]
    with BrokerProcess(data, **SECURED) as proc:
        with Admin(proc.address, token=tokens["admin"]) as admin:
            admin.create_topic("orders")
            assert admin.list_acls() == [ALICE_READS]
        assert _alice_can_describe(proc.address, tokens["alice"])
        busy = run(main, ["acl", "list", "--data-dir", str(data)])
        assert busy.exit_code == 1 and "in use by another process" in busy.output
    missing = tmp_path / "mistyped"
    nothing = run(main, ["acl", "list", "--data-dir", str(missing)])
    assert nothing.exit_code == 1 and "no data directory" in nothing.output
    assert not missing.exists()
    removed = run(main, ["acl", "remove", "--principal", "alice", "--data-dir", str(data)])
    assert removed.output.splitlines() == ["allow\talice\tread\ttopic:orders"]
    with BrokerProcess(data, **SECURED) as proc:
        assert not _alice_can_describe(proc.address, tokens["alice"])


def _legacy_file(data: Path, acls: list[Acl]) -> Path:
    """An ``acls.json`` as a broker before ``__acls`` wrote it (decision 0021)."""
    body = {"version": 1, "acls": [asdict(a) for a in acls]}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    path = data / "security" / "acls.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"crc32": zlib.crc32(canonical), "body": body}))
    return path


def test_an_older_acl_file_is_migrated_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tokens = _tokens(data)
    path = _legacy_file(data, [Acl(**asdict(ALICE_READS))])
    with (
        BrokerProcess(data, **SECURED) as proc,
        Admin(proc.address, token=tokens["admin"]) as admin,
    ):
        admin.create_topic("orders")
        assert admin.list_acls() == [ALICE_READS]
        admin.delete_acls(AclBinding(principal="alice"))
        assert "acl added: allow alice read on topic orders" in proc.output()
    assert not path.exists()
    assert path.with_name("acls.json.migrated").exists()
    with run_broker(data, **SECURED) as b, Admin(b.address, token=tokens["admin"]) as admin:
        assert admin.list_acls() == []  # the removal holds: the file was not read again


def test_an_interrupted_migration_adds_nothing_twice(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rules = [Acl(**asdict(ALICE_READS)), Acl.checked("bob", "group", "g", operation="read")]
    with offline_acl_store(data) as store:
        store.add(rules[:1])  # as if the import ran and the rename did not
    _legacy_file(data, rules)
    with offline_acl_store(data) as store:
        assert store.matching() == rules
    manager = LogManager.open(data)
    try:
        assert manager.get_log(ACLS_TOPIC, 0).log_end_offset == 2
    finally:
        manager.close()


def test_a_damaged_acl_file_refuses_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = _legacy_file(data, [Acl(**asdict(ALICE_READS))])
    path.write_text(path.read_text().replace('"read"', '"write"'))
    with pytest.raises(InvalidConfigError, match="damaged"), run_broker(data, **SECURED):
        pass
    assert path.exists()


def test_replay_keeps_order_and_the_last_word(tmp_path: Path) -> None:
    a, b, c = (Acl.checked(p, "topic", "t", operation="read") for p in "abc")
    manager = LogManager.open(tmp_path)
    try:
        assert ACLS_TOPIC not in manager.topics()
        store = open_acl_store(manager)
        assert ACLS_TOPIC not in manager.topics()  # created by the first change
        store.add([a, b])
        store.remove({"principal": "a"})
        store.add([c, a])
        plog = manager.get_log(ACLS_TOPIC, 0)
        cut = encode_rule_key(a)[:-3]
        odd = encode_batch([b"\x01", b"\x01"], keys=[b"\x09future", cut], timestamps=0)
        plog.append(odd)  # a later key type, a key this version cannot read: skipped
        assert AclTopic(manager).replay() == [b, c, a]
    finally:
        manager.close()


def test_offline_changes_keep_the_data_directory_mode(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o750)
    data.chmod(0o750)
    with offline_acl_store(data) as store:
        store.add([Acl(**asdict(ALICE_READS))])
    assert data.stat().st_mode & 0o777 == 0o750


def test_snapshots_bound_the_topic(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path)
    try:
        small = {**ACLS_TOPIC_CONFIG, "segment_bytes": 4096, "max_batch_bytes": 4096}
        manager.create_topic(ACLS_TOPIC, 1, small)
        store = open_acl_store(manager)
        keep = Acl.checked("keep", "topic", "t", operation="read")
        store.add([keep])
        for i in range(SNAPSHOT_MIN_RECORDS):  # 2 records each: one snapshot half-way
            rule = Acl.checked(f"user-{i}", "topic", "t", operation="write")
            store.add([rule])
            store.remove({"principal": rule.principal})
        plog = manager.get_log(ACLS_TOPIC, 0)
        assert plog.log_start_offset > SNAPSHOT_MIN_RECORDS // 2  # whole segments went
        assert AclTopic(manager).replay() == [keep]
    finally:
        manager.close()
