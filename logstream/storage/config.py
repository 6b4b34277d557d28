"""Per-topic configuration and the topic naming rules.

A topic's config is stored as *overrides* of the broker default (``meta/<topic>.json``, see
manager.py), so changing a broker default changes every topic that did not override it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from logstream.codec import HEADER_SIZE
from logstream.errors import InvalidConfigError, InvalidTopicError
from logstream.storage.files import DELETED_SUFFIX

NAME_MAX = 255
"""The longest file name Linux file systems accept (ext4, xfs, btrfs, tmpfs)."""
MAX_PARTITIONS = 100_000
"""Partitions per topic; partition numbers have at most 5 digits. The broker's configurable
``max_partitions_per_topic`` policy lies at or below it."""
LONGEST_NAME_SUFFIX = len(f"-{MAX_PARTITIONS - 1}") + len(DELETED_SUFFIX)
"""What storage appends to a topic name in a file name: ``<topic>-99999.deleted``, the
partition directory being removed. ``meta/<topic>.json.tmp`` (9) is shorter."""
MAX_TOPIC_NAME_LENGTH = NAME_MAX - LONGEST_NAME_SUFFIX  # 241
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]+")

INTERNAL_TOPIC_PREFIX = "__"
"""Topics whose name starts with this belong to the broker (``__consumer_offsets``): the
broker writes them through storage; clients may only fetch and describe them."""

FLUSH_POLICIES = ("never", "interval", "every_batch")
TIMESTAMP_TYPES = ("create", "log_append")

MIN_SEGMENT_BYTES = 256
MAX_SEGMENT_BYTES = 2**31 - 1  # positions in the offset index are u32; batch_length is i32

_DAY_MS = 24 * 60 * 60 * 1000
MAX_CONFIG_INT = 2**53 - 1
"""Upper bound of durations and byte counts (about 285,000 years in ms, 8 PiB): configs are
stored as JSON numbers, which many readers hold as doubles; beyond this nothing works."""


def is_internal_topic(name: str) -> bool:
    """True for the broker's own topics (see ``INTERNAL_TOPIC_PREFIX``)."""
    return name.startswith(INTERNAL_TOPIC_PREFIX)


def validate_topic_name(name: str) -> str:
    """Return ``name`` if it follows Kafka's rules, else raise InvalidTopicError.

    Rules: 1..241 characters from ``[A-Za-z0-9._-]``, and not ``.`` or ``..``. Kafka allows
    249; 241 is what keeps every file name storage derives from a topic name within
    NAME_MAX (see ``LONGEST_NAME_SUFFIX``). Names that start with ``__`` pass here
    (storage creates internal topics such as ``__consumer_offsets``); the broker refuses
    them from clients (:func:`is_internal_topic`).
    """
    if not isinstance(name, str) or not name:
        raise InvalidTopicError("topic name must be a non-empty string")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters, the limit is {MAX_TOPIC_NAME_LENGTH}"
        )
    if name in (".", ".."):
        raise InvalidTopicError(f"topic name cannot be {name!r}")
    if not _TOPIC_NAME.fullmatch(name) or not name.isascii():
        raise InvalidTopicError(
            f"topic name {name!r} may contain only ASCII letters, digits, '.', '_' and '-'"
        )
    return name


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """Settings of one topic (all partitions share them).

    - ``segment_bytes``: roll the active segment when the next batch would not fit.
    - ``segment_ms``: roll when the active segment is older than this.
    - ``retention_ms``: delete sealed segments whose largest timestamp is older (-1: never).
    - ``retention_bytes``: delete oldest sealed segments while the partition stays at least
      this big without them (-1: no size limit).
    - ``flush_policy``: ``never`` (page cache only; survives a process crash, not a machine
      crash), ``interval`` (``LogManager.flush_due`` flushes every ``flush_interval_ms``),
      ``every_batch`` (msync before ``append`` returns).
    - ``max_batch_bytes``: the largest accepted batch, header included.
    - ``timestamp_type``: ``create`` keeps producer timestamps; ``log_append`` rewrites the
      batch's first/max timestamps to the append time.
    - ``producer_id_expiration_ms``: forget an idempotent producer's state (its last
      sequence numbers) once its newest batch is older than this (Kafka's
      ``producer.id.expiration.ms``, one day). A retry arriving later is taken as new data.
    - ``message_ttl_ms``: queue groups treat a record without a ``logstream-expires-at``
      header as expiring this long after its timestamp (-1: never). The log keeps it: only
      retention deletes data, by whole segments.
    """

    segment_bytes: int = 64 * 1024 * 1024
    segment_ms: int = 7 * _DAY_MS
    retention_ms: int = 7 * _DAY_MS
    retention_bytes: int = -1
    flush_policy: str = "interval"
    flush_interval_ms: int = 1000
    max_batch_bytes: int = 1024 * 1024 + HEADER_SIZE
    timestamp_type: str = "create"
    producer_id_expiration_ms: int = _DAY_MS
    message_ttl_ms: int = -1

    def __post_init__(self) -> None:
        _check_int("segment_bytes", self.segment_bytes, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
        _check_int("segment_ms", self.segment_ms, 1, MAX_CONFIG_INT)
        _check_int("retention_ms", self.retention_ms, -1, MAX_CONFIG_INT)
        _check_int("retention_bytes", self.retention_bytes, -1, MAX_CONFIG_INT)
        _check_int("flush_interval_ms", self.flush_interval_ms, 0, MAX_CONFIG_INT)
        _check_int("max_batch_bytes", self.max_batch_bytes, HEADER_SIZE + 16, 2**31 - 1)
        _check_int("producer_id_expiration_ms", self.producer_id_expiration_ms, 1, MAX_CONFIG_INT)
        _check_int("message_ttl_ms", self.message_ttl_ms, -1, MAX_CONFIG_INT)
        if self.message_ttl_ms == 0:
            raise InvalidConfigError("message_ttl_ms must be > 0, or -1 for no TTL")
        if self.flush_policy not in FLUSH_POLICIES:
            raise InvalidConfigError(
                f"flush_policy must be one of {', '.join(FLUSH_POLICIES)}, "
                f"not {self.flush_policy!r}"
            )
        if self.timestamp_type not in TIMESTAMP_TYPES:
            raise InvalidConfigError(
                f"timestamp_type must be one of {', '.join(TIMESTAMP_TYPES)}, "
                f"not {self.timestamp_type!r}"
            )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], *, base: TopicConfig | None = None
    ) -> TopicConfig:
        """Build from a mapping of (possibly string) values over ``base`` (default: defaults).

        Keys may be spelled ``segment_bytes`` or Kafka-style ``segment.bytes``. Values may be
        strings as typed on a command line (``"1048576"``). Unknown keys or bad values raise
        InvalidConfigError.
        """
        parsed = parse_config_updates(values)
        start = base if base is not None else cls()
        return dataclasses.replace(start, **parsed)  # type: ignore[arg-type]  # values parsed per field

    def to_dict(self) -> dict[str, int | str]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def check_topic_overrides(overrides: Mapping[str, Any], config: TopicConfig) -> None:
    """Rules across keys, checked when a topic is created or altered (InvalidConfigError).

    A topic that sets its own ``max_batch_bytes`` must keep it within its ``segment_bytes``:
    such a batch could never share a segment with another. The built-in default (1 MiB +
    header) is exempt, so small test segments keep working: storage gives an oversized
    batch a segment of its own."""
    if "max_batch_bytes" in overrides and config.max_batch_bytes > config.segment_bytes:
        raise InvalidConfigError(
            f"max_batch_bytes {config.max_batch_bytes} is larger than segment_bytes "
            f"{config.segment_bytes}; lower it or raise segment_bytes"
        )


def normalize_key(key: str) -> str:
    name = key.strip().replace(".", "_").replace("-", "_")
    if name not in TopicConfig.field_names():
        raise InvalidConfigError(
            f"unknown config key {key!r}; known: {', '.join(TopicConfig.field_names())}"
        )
    return name


def parse_config_updates(values: Mapping[str, Any]) -> dict[str, int | str]:
    """Normalise keys and convert values to their field types (no range checks here)."""
    out: dict[str, int | str] = {}
    for key, raw in values.items():
        name = normalize_key(key)
        if name in ("flush_policy", "timestamp_type"):
            if not isinstance(raw, str):
                raise InvalidConfigError(f"{name} must be a string, not {raw!r}")
            out[name] = raw.strip()
        else:
            out[name] = _to_int(name, raw)
    return out


def _to_int(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise InvalidConfigError(f"{name} must be an integer, not {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        text = raw.strip().replace("_", "")
        if len(text) > 20:  # longer than any int64: refuse before parsing a huge number
            raise InvalidConfigError(
                f"{name} must be an integer up to {MAX_CONFIG_INT}, "
                f"not a {len(text)}-character value"
            )
        try:
            return int(text)
        except ValueError:
            pass
    raise InvalidConfigError(f"{name} must be an integer, not {raw!r}")


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidConfigError(f"{name} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidConfigError(f"{name} must be {bound}, not {value}")
