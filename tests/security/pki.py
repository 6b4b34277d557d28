"""Certificates for the security tests: a dev CA set plus the broken cases (another CA,
expired server and client certificates), made with the same code as ``logstream certs dev``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from logstream.cli.certs import DEFAULT_HOSTS, issue, make_dev_certs, write_pem


@dataclass
class Pki:
    dir: Path
    ca: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path
    other_ca: Path
    other_client: Path
    other_client_key: Path
    other_server: Path
    other_server_key: Path
    expired_server: Path
    expired_server_key: Path
    expired_client: Path
    expired_client_key: Path


def make_pki(directory: Path) -> Pki:
    paths = make_dev_certs(directory, client_name="alice")
    other = issue("another CA", ca=True)
    other_dir = directory / "other"
    other_dir.mkdir()
    other_ca, _ = write_pem(other_dir, "ca", *other)
    other_client, other_client_key = write_pem(other_dir, "client", *issue("alice", issuer=other))
    other_server, other_server_key = write_pem(
        other_dir, "server", *issue("localhost", issuer=other, hosts=DEFAULT_HOSTS)
    )
    # The dev CA's key signs the expired ones: only their dates are wrong.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_key = serialization.load_pem_private_key(paths["ca_key"].read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired_server, expired_server_key = write_pem(
        directory,
        "expired-server",
        *issue("localhost", issuer=(ca_key, ca_cert), hosts=DEFAULT_HOSTS, not_before=past, days=1),
    )
    expired_client, expired_client_key = write_pem(
        directory,
        "expired-client",
        *issue("alice", issuer=(ca_key, ca_cert), not_before=past, days=1),
    )
    return Pki(
        directory,
        paths["ca"],
        paths["server"],
        paths["server_key"],
        paths["client"],
        paths["client_key"],
        other_ca,
        other_client,
        other_client_key,
        other_server,
        other_server_key,
        expired_server,
        expired_server_key,
        expired_client,
        expired_client_key,
    )
