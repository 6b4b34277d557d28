"""What a broker's port needs from its security settings: the port's credentials, the
interceptors, and the SIGHUP reload of both (certificates and the credentials file)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import grpc

from logstream.broker.config import BrokerConfig
from logstream.broker.security.acl_log import open_acl_store
from logstream.broker.security.authorize import Authorizer
from logstream.broker.security.credentials import CredentialStore
from logstream.broker.security.events import quotas_reloaded, users_reloaded
from logstream.broker.security.interceptor import AuthInterceptor
from logstream.broker.security.quotas import Quotas
from logstream.broker.security.throttle import Throttle
from logstream.broker.security.tls import ServerTls
from logstream.errors import InvalidConfigError, LogstreamError
from logstream.storage import LogManager

log = logging.getLogger("logstream.broker.security")


class EdgeSecurity:
    def __init__(self, config: BrokerConfig, manager: LogManager | None = None) -> None:
        """``manager``: the broker's open data directory, which keeps the ACLs (needed
        when ``config.acls``)."""
        self.tls = (
            ServerTls(
                Path(config.tls_cert),
                Path(config.tls_key),
                Path(config.tls_client_ca) if config.tls_client_ca else None,
            )
            if config.tls_cert and config.tls_key
            else None
        )
        self.store = CredentialStore(config.data_dir) if config.auth else None
        if config.acls and manager is None:
            raise InvalidConfigError("ACLs need the broker's data directory open")
        self.acls = (
            open_acl_store(manager, config.super_user_names)
            if config.acls and manager is not None
            else None
        )
        self.authorizer = Authorizer(self.acls) if self.acls is not None else None
        self.quotas = Quotas(config.data_dir) if config.authenticated else None
        self.auth = (
            AuthInterceptor(
                self.store,
                mutual_tls=bool(self.tls and self.tls.mutual),
                authorizer=self.authorizer,
                throttle=Throttle(self.quotas) if self.quotas is not None else None,
            )
            if config.authenticated
            else None
        )
        # Called after a reload (SIGHUP), for other listeners on the same settings (the
        # Kafka listener re-reads the certificate into its own TLS context).
        self.reload_hooks: list[Callable[[], object]] = []
        if self.store is not None and not self.store.users() and not config.tls_client_ca:
            log.warning(
                "authentication is on but no user exists: run "
                "'logstream user add NAME --data-dir %s' and send SIGHUP",
                config.data_dir,
            )

    @property
    def interceptors(self) -> tuple[grpc.aio.ServerInterceptor, ...]:
        return (self.auth,) if self.auth is not None else ()

    def port_credentials(self) -> grpc.ServerCredentials | None:
        return self.tls.credentials() if self.tls else None

    @property
    def description(self) -> str:
        parts = []
        if self.tls:
            parts.append("mutual TLS" if self.tls.mutual else "TLS")
        if self.store is not None:
            parts.append("token auth")
        if self.acls is not None:
            parts.append("ACLs")
        return ", ".join(parts) or "plaintext, no authentication"

    def reload(self) -> None:
        """SIGHUP: certificates, the credentials file and the quota file are read again; a
        bad file is logged and the current one stays. (ACLs change only through the
        running broker: they live in its ``__acls`` topic.)"""
        if self.tls:
            self.tls.reload()
        if self.store is not None and self.auth is not None:
            users = {u.name: u for u in self.store.users()}
            try:
                self.store.reload()
            except (InvalidConfigError, LogstreamError) as exc:
                log.error("credentials reload failed, keeping the current users: %s", exc)
            else:
                self.auth.forget_tokens()
                log.info("credentials reloaded: %d users", len(self.store.users()))
                users_reloaded(users, {u.name: u for u in self.store.users()})
        if self.quotas is not None:
            quotas = self.quotas.snapshot()
            try:
                self.quotas.reload()
            except InvalidConfigError as exc:
                log.error("quota reload failed, keeping the current quotas: %s", exc)
            else:
                quotas_reloaded(quotas, self.quotas.snapshot())
        for hook in self.reload_hooks:
            try:
                hook()
            except Exception:
                log.exception("a security reload hook failed")
