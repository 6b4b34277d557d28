"""``logstream certs dev DIR``: a throw-away CA plus server and client certificates.

For trying TLS locally, never for production: the CA key is written next to the
certificates. Files (PEM): ``ca.pem`` ``ca.key`` ``server.pem`` ``server.key``
``client.pem`` ``client.key``; keys are 0600. The server certificate names ``localhost``,
``127.0.0.1`` and ``::1`` plus any ``--host``; the client certificate's CN is the
principal (``--client-name``, default ``admin``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import Any

import click

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")


def _names(hosts: tuple[str, ...]) -> list[Any]:
    from cryptography import x509

    out: list[Any] = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def issue(
    common_name: str,
    *,
    issuer: tuple[Any, Any] | None = None,
    ca: bool = False,
    hosts: tuple[str, ...] = (),
    not_before: dt.datetime | None = None,
    days: float = 365,
) -> tuple[Any, Any]:
    """A new EC key and a certificate for it, signed by ``issuer`` (key, certificate) or by
    itself. Returns ``(key, certificate)`` as ``cryptography`` objects."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    signer_key, issuer_name = (issuer[0], issuer[1].subject) if issuer else (key, subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if hosts else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(_names(hosts)), critical=False
            )
    return key, builder.sign(signer_key, hashes.SHA256())


def write_pem(directory: Path, stem: str, key: Any, cert: Any) -> tuple[Path, Path]:
    """``stem.pem`` (certificate) and ``stem.key`` (0600) in ``directory``."""
    from cryptography.hazmat.primitives import serialization

    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def make_dev_certs(
    directory: Path, *, hosts: tuple[str, ...] = (), client_name: str = "admin"
) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    ca = issue("logstream dev CA", ca=True, days=3650)
    server = issue("localhost", issuer=ca, hosts=(*DEFAULT_HOSTS, *hosts))
    client = issue(client_name, issuer=ca)
    paths: dict[str, Path] = {}
    for stem, (key, cert) in (("ca", ca), ("server", server), ("client", client)):
        paths[stem], paths[f"{stem}_key"] = write_pem(directory, stem, key, cert)
    return paths


EXAMPLES = """\b
Examples:
  logstream certs dev ./tls
  logstream serve --tls-cert tls/server.pem --tls-key tls/server.key --tls-client-ca tls/ca.pem
  logstream --ca tls/ca.pem --cert tls/client.pem --key tls/client.key topic list
"""


@click.group(epilog=EXAMPLES)
def certs() -> None:
    """Certificates for TLS (see docs/security.md)."""


@certs.command(epilog=EXAMPLES)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", "hosts", multiple=True, help="Another name or IP of the broker.")
@click.option("--client-name", default="admin", help="CN of the client certificate.")
@click.option("--force", is_flag=True, help="Replace the certificates DIRECTORY holds.")
def dev(directory: Path, hosts: tuple[str, ...], client_name: str, force: bool) -> None:
    """Write a throw-away CA, a server and a client certificate into DIRECTORY."""
    from logstream.cli.lazy_group import fail

    # A new CA makes the broker's certificate and every client's ca.pem of the old set
    # useless: running the quick start twice must not break the setup it made.
    existing = [directory / name for name in FILES if (directory / name).exists()]
    if existing and not force:
        raise fail(
            f"{existing[0]} exists (a broker or a client may use it); "
            "add --force to replace the whole set"
        )
    paths = make_dev_certs(directory, hosts=hosts, client_name=client_name)
    for name in ("ca", "server", "server_key", "client", "client_key"):
        click.echo(f"{name:<11} {paths[name]}")
