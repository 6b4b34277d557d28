"""``logstream serve``: run a broker in the foreground until SIGTERM/SIGINT.

The broker package is imported inside the command, so other commands stay light.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from logstream.cli.params import HOST_PORT


@click.command(
    epilog="""\b
Examples:
  logstream serve --data-dir ./data                      # on 127.0.0.1:7070
  logstream serve --listen 0.0.0.0:7070 --auth --tls-cert s.pem --tls-key s.key
  logstream serve --auth --acls --super-users admin --data-dir ./data
  logstream serve --listen 0.0.0.0:7070 --insecure   # no authentication: trusted networks only
  logstream serve --listen 127.0.0.1:0 --data-dir "$(mktemp -d)"   # a free port, printed
  logstream serve --http-listen 127.0.0.1:7071 --log-format json  # /metrics, JSON logs
  logstream serve --kafka-listen 127.0.0.1:9092          # Kafka clients too (kcat -b ...)
"""
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="LOGSTREAM_DATA_DIR",
    default=None,
    help="Directory of the log data (created if missing). [default: ./logstream-data]",
)
@click.option(
    "--listen",
    envvar="LOGSTREAM_LISTEN",
    default=None,
    type=HOST_PORT,
    metavar="HOST:PORT",
    help="Address to serve on; port 0 picks a free port. [default: 127.0.0.1:7070]",
)
@click.option(
    "--kafka-listen",
    envvar="LOGSTREAM_KAFKA_LISTEN",
    default=None,
    metavar="HOST:PORT",
    help="Also speak the Kafka protocol on this address (docs/kafka-protocol.md). [default: off]",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="LOGSTREAM_CONFIG",
    default=None,
    help="TOML file: broker settings and [topic_defaults] (see docs/broker.md).",
)
@click.option(
    "--log-level",
    envvar="LOGSTREAM_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Logging level of the stderr log. [default: INFO]",
)
@click.option(
    "--log-format",
    envvar="LOGSTREAM_LOG_FORMAT",
    type=click.Choice(["text", "json"], case_sensitive=False),
    default=None,
    help="stderr log lines: text, or one JSON object per line (docs/monitoring.md). "
    "[default: text]",
)
@click.option(
    "--http-listen",
    envvar="LOGSTREAM_HTTP_LISTEN",
    default=None,
    metavar="HOST:PORT",
    help="Serve /metrics, /healthz and /readyz here; empty: off. [default: off]",
)
@click.option(
    "--auto-create-topics/--no-auto-create-topics",
    envvar="LOGSTREAM_AUTO_CREATE_TOPICS",
    default=None,
    help="Create unknown topics on produce. [default: off]",
)
@click.option(
    "--tls-cert",
    envvar="LOGSTREAM_TLS_CERT",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM certificate (chain) of the broker: TLS on the port (with --tls-key).",
)
@click.option(
    "--tls-key",
    envvar="LOGSTREAM_TLS_KEY",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM private key of --tls-cert.",
)
@click.option(
    "--tls-client-ca",
    envvar="LOGSTREAM_TLS_CLIENT_CA",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Mutual TLS: clients must present a certificate signed by this CA.",
)
@click.option(
    "--auth/--no-auth",
    envvar="LOGSTREAM_AUTH",
    default=None,
    help="Require a token (logstream user add) or a client certificate on every call.",
)
@click.option(
    "--acls/--no-acls",
    envvar="LOGSTREAM_ACLS",
    default=None,
    help="Authorise every call by ACL (default deny; logstream acl add). Needs --auth or mTLS.",
)
@click.option(
    "--super-users",
    envvar="LOGSTREAM_SUPER_USERS",
    default=None,
    metavar="NAME,NAME",
    help="Principals that bypass ACLs.",
)
@click.option(
    "--insecure",
    is_flag=True,
    envvar="LOGSTREAM_INSECURE",
    default=None,
    help="Allow a non-loopback --listen without authentication (protected mode off).",
)
def serve(
    data_dir: Path | None,
    listen: str | None,
    kafka_listen: str | None,
    config_file: Path | None,
    log_level: str | None,
    log_format: str | None,
    http_listen: str | None,
    auto_create_topics: bool | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_client_ca: str | None,
    auth: bool | None,
    acls: bool | None,
    super_users: str | None,
    insecure: bool | None,
) -> None:
    """Run a broker: prints 'logstream broker listening on HOST:PORT (data: DIR)'."""
    from logstream.broker import build_config
    from logstream.broker import serve as run
    from logstream.broker.config import PROTECTED_MODE
    from logstream.broker.http import configure_logging
    from logstream.broker.network import check_listen_address
    from logstream.errors import LogstreamError

    try:
        config = build_config(
            config_file,
            data_dir=data_dir,
            listen=listen,
            kafka_listen=kafka_listen,
            log_level=log_level.upper() if log_level else None,
            log_format=log_format.lower() if log_format else None,
            http_listen=http_listen,
            auto_create_topics=auto_create_topics,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            auth=auth,
            acls=acls,
            super_users=super_users,
            insecure=insecure or None,
        )
    except LogstreamError as exc:
        if str(exc).startswith(PROTECTED_MODE):  # one line, as Redis says it
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        raise click.UsageError(str(exc)) from exc
    configure_logging(config.log_level, config.log_format)
    try:
        # Before the data directory is created or opened: a busy port changes nothing.
        check_listen_address(config.listen)
        if config.kafka_listen:
            check_listen_address(config.kafka_listen)
        code = run(config, on_started=_kafka_edge if config.kafka_listen else None, exiting=True)
    except (LogstreamError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


def _kafka_edge(server: Any) -> Callable[[], None]:
    """Start the Kafka listener beside the gRPC server; prints its address line."""
    from logstream.kafka import KafkaListener

    listener = KafkaListener(
        server.broker,
        server.config.kafka_listen,
        security=server.security,
        request_gate=server.request_gate,
    )
    listener.start()
    click.echo(f"logstream kafka listener on {listener.address}")
    return listener.stop
