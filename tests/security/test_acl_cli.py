"""``logstream acl`` end to end, and the rules surviving a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from logstream.broker.security.credentials import CredentialStore
from logstream.cli.main import main
from logstream.client import AclBinding, Admin
from logstream.errors import (
    AuthenticationFailedError,
    InvalidConfigError,
    InvalidRequestError,
    TopicAuthorizationFailedError,
)
from logstream.testing.broker import run_broker

READ_ALLOW = ("--operation", "read", "--allow")


def test_acl_commands_and_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = CredentialStore(data)
    admin_token, alice_token = store.add("admin"), store.add("alice")
    run = CliRunner().invoke
    with run_broker(data, auth=True, acls=True, super_users="admin") as b:
        base = ["-b", b.address, "--token", admin_token, "acl"]
        added = run(
            main,
            [*base, "add", "--principal", "alice", "--topic", "ord", "--prefix", *READ_ALLOW],
        )
        assert added.exit_code == 0 and "added" in added.output, added.output
        cluster = run(
            main, [*base, "add", "--principal", "ops", "--cluster", "--operation", "alter"]
        )
        assert cluster.exit_code == 0, cluster.output
        listed = run(main, [*base, "list", "--principal", "alice"])
        assert listed.output.splitlines() == ["allow\talice\tread\ttopic:ord*"]
        both = run(
            main,
            [*base, "add", "--principal", "x", "--topic", "t", "--group", "g", *READ_ALLOW],
        )
        assert both.exit_code == 2
        refused = run(main, ["-b", b.address, "--token", alice_token, "acl", "list"])
        assert (refused.exit_code == 1 and "CLUSTER_AUTHORIZATION_FAILED" in refused.output) or (
            "not authorized" in refused.output
        )
    with run_broker(data, auth=True, acls=True, super_users="admin") as b:
        admin = Admin(b.address, token=admin_token)
        assert AclBinding("alice", "topic", "ord", "prefix", "read", "allow") in admin.list_acls()
        admin.create_topic("orders")
        alice = Admin(b.address, token=alice_token)
        assert [t.name for t in alice.list_topics()] == ["orders"]
        base = ["-b", b.address, "--token", admin_token, "acl"]
        everything = run(main, [*base, "remove"])
        assert everything.exit_code == 2  # remove refuses to remove every rule at once
        removed = run(main, [*base, "remove", "--principal", "alice"])
        assert removed.output.splitlines() == ["allow\talice\tread\ttopic:ord*"]
        with pytest.raises(TopicAuthorizationFailedError):
            alice.describe_topic("orders")
        alice.close()
        admin.close()


def test_acls_need_authentication(tmp_path: Path) -> None:
    with (
        pytest.raises(InvalidConfigError, match="acls need authentication"),
        run_broker(tmp_path / "d", acls=True),
    ):
        pass


def test_users_online_take_effect_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    admin_token = CredentialStore(data).add("admin")
    run = CliRunner().invoke
    with run_broker(data, auth=True, acls=True, super_users="admin") as b:
        base = ["-b", b.address, "--token", admin_token, "user"]
        added = run(main, [*base, "add", "carol", "--online"])
        assert added.exit_code == 0, added.output
        carol = added.output.strip()
        assert carol.startswith("ls1.carol.")
        client = Admin(b.address, token=carol)
        assert client.list_topics() == []
        listed = run(main, [*base, "list", "--online"]).output
        assert [line.split("\t")[0] for line in listed.splitlines()] == ["admin", "carol"]
        assert carol.rpartition(".")[2] not in listed
        rotated = run(main, [*base, "rotate", "carol", "--online"]).output.strip()
        with pytest.raises(AuthenticationFailedError):
            client.list_topics()
        client.close()
        assert Admin(b.address, token=rotated).list_topics() == []
        assert run(main, [*base, "remove", "carol", "--online"]).exit_code == 0
        with pytest.raises(AuthenticationFailedError):
            Admin(b.address, token=rotated).list_topics()
        carol_cli = ["-b", b.address, "--token", rotated, "user", "add", "eve", "--online"]
        assert run(main, carol_cli).exit_code == 1
    assert "carol" not in {u.name for u in CredentialStore(data).users()}


def test_users_online_need_acls(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = CredentialStore(data).add("admin")
    with run_broker(data, auth=True) as b:
        admin = Admin(b.address, token=token)
        with pytest.raises(InvalidRequestError, match="needs --auth and --acls"):
            admin.create_user("mallory")
        admin.close()
