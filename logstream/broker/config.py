"""Broker configuration: one frozen dataclass, loadable from a TOML file.

TOML layout (every key optional; unknown keys are an error)::

    listen = "127.0.0.1:7070"
    kafka_listen = ""                # HOST:PORT of the Kafka protocol listener; "" = off
    data_dir = "./logstream-data"
    data_dir_mode = 0o700            # permission bits of the data directory (set at every start)
    file_mode = 0o600                # of every file storage creates
    auto_create_topics = false       # create unknown topics on produce
    default_partitions = 1           # for auto-created topics and CreateTopics with 0 partitions
    max_message_bytes = 67108864     # gRPC max receive/send message size (64 MiB)
    fetch_max_bytes = 52428800       # default total bytes of one fetch response
    fetch_partition_max_bytes = 1048576
    fetch_max_wait_ms = 30000        # cap on a fetch's max_wait_ms
    produce_timeout_ms = 30000       # default wait for acks=flushed when the request says 0
    max_workers = 64                 # threads for blocking calls (admin, groups, acks=flushed)
    max_waiters = 10000              # long-polling fetches + open subscriptions at once
    max_request_bytes_in_flight = 268435456  # decoded request bytes held at once (256 MiB)
    max_request_bytes_per_connection = 134217728  # of those, by one connection (128 MiB)
    max_connections_per_address = 1000   # connections with a call open, per client address
    max_streams_per_address = 10000      # open Subscribe/ProduceStream calls per address
    flush_check_interval_ms = 50     # how often flush_due() runs (interval flush policy)
    retention_check_interval_ms = 60000
    grace_period_s = 5.0             # in-flight calls may finish for this long on shutdown
    log_level = "INFO"
    log_format = "text"              # text | json (one object per line, docs/monitoring.md)
    http_listen = ""                 # HOST:PORT of /metrics, /healthz, /readyz; "" = off
    metrics_partition_series_limit = 2000  # partitions with per-partition series
    slow_request_ms = 1000           # unary calls slower than this log a slow_request event
    group_min_session_timeout_ms = 1000    # consumer groups (docs/consumer-groups.md)
    group_max_session_timeout_ms = 300000
    group_heartbeat_interval_ms = 1000
    group_expiry_check_interval_ms = 200   # how often session timeouts / offset expiry run
    group_max_size = 1000                  # members per group (beyond: GROUP_MAX_SIZE_REACHED)
    max_partitions_per_topic = 10000       # create / add-partitions beyond: INVALID_PARTITIONS
    offsets_retention_ms = 604800000       # offsets of a group empty this long are deleted
    offsets_compact_min_records = 10000    # __consumer_offsets checkpoint after this many commits
    producer_name_expiration_ms = 604800000  # a producer name unused this long is forgotten
    producer_names_max = 100000            # beyond: the least recently used name is forgotten
    keepalive_min_ping_interval_ms = 10000 # accept client pings this often (<= the clients' 30 s)
    tls_cert = "server.pem"          # TLS on the port (docs/security.md); with tls_key
    tls_key = "server.key"
    tls_client_ca = "ca.pem"         # mutual TLS: clients must present a certificate it signed
    auth = false                     # tokens (or client certificates) required on every call
    acls = false                     # authorisation: default deny, rules via `logstream acl`
    super_users = "admin,ops"        # principals that bypass ACLs
    insecure = false                 # allow a non-loopback listen address without authentication

    [topic_defaults]                 # TopicConfig keys: the defaults of every topic
    max_batch_bytes = 1048648        # 1 MiB + the 72-byte header
    flush_policy = "interval"        # never | interval | every_batch
    flush_interval_ms = 1000
    retention_ms = 604800000

    [queue_defaults]                 # QueueSettings keys: what a queue group created on
    lease_ms = 30000                 # first use gets (docs/queues.md, Settings)
    max_deliveries = 5

Precedence (highest first): command line / ``LOGSTREAM_*`` environment, the TOML file,
the defaults below.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logstream.coordinator.queues import QueueSettings
from logstream.errors import InvalidConfigError
from logstream.storage.config import (
    MAX_PARTITIONS,
    TopicConfig,
    check_topic_overrides,
    parse_config_updates,
)

MiB = 1 << 20

DEFAULT_TOPIC_CONFIG: dict[str, Any] = {}
"""Broker-level defaults layered under ``topic_defaults``; storage's ``TopicConfig`` defaults
fill the rest (max_batch_bytes 1 MiB + header, flush_policy interval every 1000 ms)."""


PROTECTED_MODE = "refusing to listen on"
"""How the refusal of protected mode (no authentication on a non-loopback address) starts."""


@dataclass(frozen=True)
class BrokerConfig:
    data_dir: Path = Path("./logstream-data")
    data_dir_mode: int = 0o700
    file_mode: int = 0o600
    listen: str = "127.0.0.1:7070"
    kafka_listen: str = ""
    auto_create_topics: bool = False
    default_partitions: int = 1
    topic_defaults: Mapping[str, Any] = field(default_factory=dict)
    max_message_bytes: int = 64 * MiB
    fetch_max_bytes: int = 50 * MiB
    fetch_partition_max_bytes: int = 1 * MiB
    fetch_max_wait_ms: int = 30_000
    produce_timeout_ms: int = 30_000
    max_workers: int = 64
    max_waiters: int = 10_000
    max_request_bytes_in_flight: int = 256 * MiB
    max_request_bytes_per_connection: int = 128 * MiB
    max_connections_per_address: int = 1_000
    max_streams_per_address: int = 10_000
    flush_check_interval_ms: int = 50
    retention_check_interval_ms: int = 60_000
    grace_period_s: float = 5.0
    log_level: str = "INFO"
    log_format: str = "text"
    http_listen: str = ""
    metrics_partition_series_limit: int = 2_000
    slow_request_ms: int = 1_000
    group_min_session_timeout_ms: int = 1_000
    group_max_session_timeout_ms: int = 300_000
    group_heartbeat_interval_ms: int = 1_000
    group_expiry_check_interval_ms: int = 200
    group_max_size: int = 1_000
    max_partitions_per_topic: int = 10_000
    offsets_retention_ms: int = 7 * 24 * 60 * 60 * 1000
    offsets_compact_min_records: int = 10_000
    producer_name_expiration_ms: int = 7 * 24 * 60 * 60 * 1000
    producer_names_max: int = 100_000
    keepalive_min_ping_interval_ms: int = 10_000
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    auth: bool = False
    acls: bool = False
    super_users: str = ""
    insecure: bool = False
    queue_defaults: Mapping[str, Any] = field(default_factory=dict)
    queue_tick_interval_ms: int = 50  # how often queue timers (leases, delays) are checked

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(
            self, "topic_defaults", {**DEFAULT_TOPIC_CONFIG, **dict(self.topic_defaults)}
        )
        if self.default_partitions < 1:
            raise InvalidConfigError(f"default_partitions must be >= 1: {self.default_partitions}")
        if self.max_message_bytes < 1 * MiB:
            raise InvalidConfigError(
                f"max_message_bytes must be >= 1 MiB: {self.max_message_bytes}"
            )
        if self.offsets_compact_min_records < 1:
            raise InvalidConfigError(
                f"offsets_compact_min_records must be >= 1: {self.offsets_compact_min_records}"
            )
        if self.group_max_size < 1:
            raise InvalidConfigError(f"group_max_size must be >= 1: {self.group_max_size}")
        if not 1 <= self.max_partitions_per_topic <= MAX_PARTITIONS:
            raise InvalidConfigError(
                f"max_partitions_per_topic must be in [1, {MAX_PARTITIONS}]: "
                f"{self.max_partitions_per_topic}"
            )
        for key in ("data_dir_mode", "file_mode"):
            mode = getattr(self, key)
            if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
                raise InvalidConfigError(f"{key} must be permission bits such as 0o700: {mode!r}")
        if self.producer_name_expiration_ms < 1 or self.producer_names_max < 1:
            raise InvalidConfigError(
                "producer_name_expiration_ms and producer_names_max must be >= 1"
            )
        if self.keepalive_min_ping_interval_ms < 1:
            raise InvalidConfigError(
                "keepalive_min_ping_interval_ms must be >= 1: "
                f"{self.keepalive_min_ping_interval_ms}"
            )
        if self.max_workers < 2:
            raise InvalidConfigError(f"max_workers must be >= 2: {self.max_workers}")
        if self.max_waiters < 1:
            raise InvalidConfigError(f"max_waiters must be >= 1: {self.max_waiters}")
        if self.max_request_bytes_in_flight < self.max_message_bytes:
            raise InvalidConfigError(
                "max_request_bytes_in_flight must be >= max_message_bytes "
                f"({self.max_message_bytes}): {self.max_request_bytes_in_flight}"
            )
        if 0 < self.max_request_bytes_per_connection < self.max_message_bytes:
            raise InvalidConfigError(
                "max_request_bytes_per_connection must be 0 (off) or >= max_message_bytes "
                f"({self.max_message_bytes}): {self.max_request_bytes_per_connection}"
            )
        if self.max_connections_per_address < 0 or self.max_streams_per_address < 0:
            raise InvalidConfigError(
                "max_connections_per_address and max_streams_per_address must be >= 0 (0: off)"
            )
        defaults = parse_config_updates(dict(self.topic_defaults))
        check_topic_overrides(defaults, TopicConfig.from_dict(defaults))
        if self.log_format not in ("text", "json"):
            raise InvalidConfigError(f"log_format must be text or json, got {self.log_format!r}")
        if self.metrics_partition_series_limit < 0:
            raise InvalidConfigError(
                "metrics_partition_series_limit must be >= 0: "
                f"{self.metrics_partition_series_limit}"
            )
        if self.slow_request_ms < 0:
            raise InvalidConfigError(f"slow_request_ms must be >= 0: {self.slow_request_ms}")
        if self.http_listen:
            h_host, h_sep, h_port = self.http_listen.rpartition(":")
            if not h_sep or not h_host or not h_port.isdigit():
                raise InvalidConfigError(
                    f"http_listen must be HOST:PORT or empty, got {self.http_listen!r}"
                )
        queue_settings(self.queue_defaults)
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise InvalidConfigError(
                f"listen must be HOST:PORT with a port from 0 to 65535, got {self.listen!r}"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidConfigError("tls_cert and tls_key go together")
        if self.acls and not self.authenticated:
            raise InvalidConfigError("acls need authentication: --auth or --tls-client-ca")
        if self.tls_client_ca and not self.tls_cert:
            raise InvalidConfigError("tls_client_ca needs tls_cert and tls_key")
        if not (self.authenticated or self.insecure or is_loopback(host)):
            raise InvalidConfigError(
                f"{PROTECTED_MODE} {self.listen} without authentication (protected "
                "mode): use --auth or --tls-client-ca, or --insecure to allow it"
            )

        if self.kafka_listen:
            k_host, k_sep, k_port = self.kafka_listen.rpartition(":")
            if not k_sep or not k_host or not k_port.isdigit() or int(k_port) > 65535:
                raise InvalidConfigError(
                    "kafka_listen must be HOST:PORT with a port from 0 to 65535, "
                    f"got {self.kafka_listen!r}"
                )
            # The Kafka listener authenticates like the gRPC port: SASL against the same
            # users with --auth, the client certificate with --tls-client-ca.
            if not (self.authenticated or self.insecure or is_loopback(k_host.strip("[]"))):
                raise InvalidConfigError(
                    f"{PROTECTED_MODE} kafka_listen {self.kafka_listen} without authentication "
                    "(protected mode): use --auth or --tls-client-ca, a loopback address, or "
                    "--insecure to allow it"
                )

    @property
    def super_user_names(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.super_users.split(",") if n.strip())

    @property
    def authenticated(self) -> bool:
        """Every call carries a verified identity (a token, or a client certificate)."""
        return self.auth or bool(self.tls_client_ca)

    def replace(self, **changes: Any) -> BrokerConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> BrokerConfig:
        """Build from a dict of field values (as from TOML); unknown keys raise."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InvalidConfigError(f"unknown broker config keys: {', '.join(unknown)}")
        for f in dataclasses.fields(cls):
            if f.name in values and f.name not in ("data_dir", "topic_defaults", "queue_defaults"):
                kinds: dict[str, type | tuple[type, ...]] = {
                    "bool": bool,
                    "int": int,
                    "float": (int, float),
                    "str": str,
                    "str | None": str,
                }
                want = kinds.get(str(f.type))
                value = values[f.name]
                if want is not None and (
                    not isinstance(value, want) or (want is int and isinstance(value, bool))
                ):
                    raise InvalidConfigError(f"{f.name} must be {f.type}, got {value!r}")
        if "topic_defaults" in values and not isinstance(values["topic_defaults"], Mapping):
            raise InvalidConfigError("topic_defaults must be a table")
        if "queue_defaults" in values and not isinstance(values["queue_defaults"], Mapping):
            raise InvalidConfigError("queue_defaults must be a table")
        return cls(**values)


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def queue_settings(values: Mapping[str, Any], base: QueueSettings | None = None) -> QueueSettings:
    """``values`` (QueueSettings field names) over ``base`` (default: the defaults)."""
    names = {f.name for f in dataclasses.fields(QueueSettings)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InvalidConfigError(f"unknown queue settings: {', '.join(unknown)}")
    return (base or QueueSettings()).replace(**dict(values))


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a dict of BrokerConfig fields (not yet validated)."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise InvalidConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfigError(f"bad TOML in {path}: {exc}") from exc


def build_config(config_file: str | Path | None = None, **overrides: Any) -> BrokerConfig:
    """File values overlaid with the non-None ``overrides`` (command line / environment)."""
    values: dict[str, Any] = load_toml(config_file) if config_file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return BrokerConfig.from_mapping(values)
