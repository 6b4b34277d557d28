"""Protected mode (no authentication: loopback only unless --insecure) and the security
commands of the CLI: certs dev, user add/list/rotate/remove, client TLS/token options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from logstream.broker import BrokerConfig
from logstream.broker.security.credentials import CredentialStore
from logstream.cli.main import main
from logstream.errors import InvalidConfigError
from logstream.testing.broker import run_broker


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "10.1.2.3:7070", "example.org:7070"])
def test_a_public_address_without_authentication_is_refused(tmp_path: Path, listen: str) -> None:
    with pytest.raises(InvalidConfigError, match="protected mode"):
        BrokerConfig(data_dir=tmp_path, listen=listen)


@pytest.mark.parametrize(
    "extra",
    [{"insecure": True}, {"auth": True}, {"tls_cert": "c", "tls_key": "k", "tls_client_ca": "ca"}],
)
def test_authentication_or_insecure_allows_a_public_address(tmp_path: Path, extra: dict) -> None:
    BrokerConfig(data_dir=tmp_path, listen="0.0.0.0:7070", **extra)


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.3.4.5:7070", "[::1]:0", "localhost:7070"])
def test_loopback_needs_nothing(tmp_path: Path, listen: str) -> None:
    BrokerConfig(data_dir=tmp_path, listen=listen)


def test_serve_says_so_in_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "logstream", "serve", "--data-dir", str(tmp_path / "d")]
    proc = subprocess.run(
        [*cmd, "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "protected mode" in lines[0] and "--insecure" in lines[0]


def test_insecure_serves_on_all_addresses(tmp_path: Path) -> None:
    with run_broker(tmp_path / "d", listen="0.0.0.0:0", insecure=True) as b:
        assert b.port > 0


def test_certs_dev_writes_a_working_set(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["certs", "dev", str(tmp_path / "tls")])
    assert result.exit_code == 0, result.output
    for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"):
        assert (tmp_path / "tls" / name).exists()
    assert (tmp_path / "tls" / "server.key").stat().st_mode & 0o777 == 0o600
    tls = tmp_path / "tls"
    config = {
        "tls_cert": str(tls / "server.pem"),
        "tls_key": str(tls / "server.key"),
        "tls_client_ca": str(tls / "ca.pem"),
    }
    with run_broker(tmp_path / "d", **config) as b:
        args = ["-b", b.address, "--ca", str(tls / "ca.pem"), "--cert", str(tls / "client.pem")]
        args += ["--key", str(tls / "client.key"), "topic", "create", "orders"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        listed = CliRunner().invoke(main, [*args[:8], "topic", "list"])
        assert "orders" in listed.output


def test_user_commands(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    run = CliRunner().invoke
    added = run(main, ["user", "add", "alice", "--data-dir", data])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()  # the note that it made the directory is on stderr
    assert token.startswith("ls1.alice.")
    again = run(main, ["user", "add", "alice", "--data-dir", data])
    assert again.exit_code == 1 and "exists" in again.output
    listed = run(main, ["user", "list", "--data-dir", data])
    assert listed.output.startswith("alice\tcreated ")
    assert token.rpartition(".")[2] not in listed.output
    rotated = run(main, ["user", "rotate", "alice", "--data-dir", data]).output.strip()
    store = CredentialStore(Path(data))
    assert store.verify(rotated) == "alice" and store.verify(token) is None
    with run_broker(Path(data), auth=True) as b:
        ok = run(main, ["-b", b.address, "--token", rotated, "topic", "list"])
        assert ok.exit_code == 0, ok.output
        refused = run(main, ["-b", b.address, "--token", token, "topic", "list"])
        assert refused.exit_code == 1
        assert "invalid token" in refused.output and token not in refused.output
    assert run(main, ["user", "remove", "alice", "--data-dir", data]).exit_code == 0
    assert run(main, ["user", "list", "--data-dir", data]).output == ""
    bad = run(main, ["user", "add", "../etc", "--data-dir", data])
    assert bad.exit_code == 1 and "user names" in bad.output
