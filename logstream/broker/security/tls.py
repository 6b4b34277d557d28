"""TLS credentials of the broker's gRPC port, reloadable without a restart.

The port is opened with gRPC's dynamic SSL credentials: gRPC asks :meth:`ServerTls._fetch`
for a certificate configuration before each new handshake. It answers ``None`` (keep the
current one) until :meth:`ServerTls.reload` has read new files, then hands them over once.
Connections already open keep the certificate they were made with.

Concurrency: ``reload`` runs on the signal-handling thread, ``_fetch`` on a gRPC core thread;
a lock guards the hand-over.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc

from logstream.errors import InvalidConfigError

log = logging.getLogger("logstream.broker.security")


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if b"-----BEGIN" not in data:
        raise InvalidConfigError(f"{what} {path} is not a PEM file")
    return data


class ServerTls:
    """The certificate, key and optional client CA (mTLS) of one listening port."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self.client_ca = Path(client_ca) if client_ca else None
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._initial = self._load()

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def _load(self) -> grpc.ServerCertificateConfiguration:
        key = _read(self.key, "TLS key")
        cert = _read(self.cert, "TLS certificate")
        ca = _read(self.client_ca, "client CA") if self.client_ca else None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self._fetch, require_client_authentication=self.mutual
        )

    def reload(self) -> bool:
        """Read the files again; new handshakes use them. False (and a log line) when they
        cannot be read: the current certificate stays."""
        try:
            config = self._load()
        except InvalidConfigError as exc:
            log.error("TLS reload failed, keeping the current certificate: %s", exc)
            return False
        with self._lock:
            self._pending = config
        log.info("TLS certificate reloaded from %s", self.cert)
        return True

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            config, self._pending = self._pending, None
        return config
