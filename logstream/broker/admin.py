"""Topic administration over ``LogManager``: create, delete, list, describe, alter, grow.

Each operation works on one topic and raises a ``LogstreamError`` that the servicer puts in
that topic's result; a batch request never fails as a whole because one topic is bad.
Config values arrive as strings from the wire; storage's ``TopicConfig.from_dict`` parses
and validates them (unknown key or bad value: INVALID_CONFIG).

Internal topics (a name starting with ``__``, storage's ``is_internal_topic``) belong to the
broker: clients may list and describe them, every other operation here is refused with
INTERNAL_TOPIC_READ_ONLY before anything is touched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from logstream.broker.broker import Broker
from logstream.broker.http import event
from logstream.errors import (
    InternalTopicReadOnlyError,
    InvalidPartitionsError,
    InvalidRequestError,
    InvalidTopicError,
    KafkaStorageError,
    LogstreamError,
    TopicAlreadyExistsError,
)
from logstream.protocol.request_reply import INBOX_PREFIX, check_inbox_name, is_inbox
from logstream.storage import TopicConfig, validate_topic_name
from logstream.storage.config import (
    check_topic_overrides,
    is_internal_topic,
    normalize_key,
    parse_config_updates,
)

log = logging.getLogger("logstream.broker.admin")


def refuse_internal(name: str, action: str) -> None:
    """Raise InternalTopicReadOnlyError if a client asks to ``action`` an internal topic,
    InvalidTopicError for a name in the reply-inbox namespace (inboxes have no log)."""
    if is_inbox(name):
        raise InvalidTopicError(
            f"{name!r} is a reply inbox (names starting with {INBOX_PREFIX!r} are reserved for "
            f"request/reply): it has no log to {action}"
        )
    if is_internal_topic(name):
        raise InternalTopicReadOnlyError(
            f"topic {name!r} is internal (its name starts with '__'): clients may fetch and "
            f"describe it but not {action} it"
        )


@dataclass(slots=True)
class PartitionInfo:
    partition: int
    log_start_offset: int = -1
    log_end_offset: int = -1
    flushed_offset: int = -1
    size_bytes: int = 0
    segment_count: int = 0
    error: LogstreamError | None = None


@dataclass(slots=True)
class TopicInfo:
    name: str
    config: dict[str, str] = field(default_factory=dict)
    partitions: list[PartitionInfo] = field(default_factory=list)
    error: LogstreamError | None = None

    @property
    def internal(self) -> bool:
        return is_internal_topic(self.name)


def _config_strings(config: TopicConfig) -> dict[str, str]:
    return {k: str(v) for k, v in config.to_dict().items()}


class AdminHandler:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    @property
    def _mgr(self):  # type: ignore[no-untyped-def]
        return self.broker.manager

    def _check_partition_limit(self, name: str, count: int) -> None:
        limit = self.broker.config.max_partitions_per_topic
        if count > limit:
            raise InvalidPartitionsError(
                f"topic {name!r}: {count} partitions exceed the broker limit of {limit} per "
                "topic (max_partitions_per_topic)"
            )

    def create_topic(
        self,
        name: str,
        partitions: int,
        config: Mapping[str, str],
        *,
        validate_only: bool = False,
    ) -> None:
        """``partitions`` 0 means the broker's ``default_partitions``."""
        refuse_internal(name, "create")
        with self.broker.operation():
            count = partitions or self.broker.config.default_partitions
            self._check_partition_limit(name, count)
            if validate_only:
                validate_topic_name(name)
                if count < 1:
                    raise InvalidPartitionsError(f"partitions must be >= 1, got {count}")
                overrides = parse_config_updates(dict(config))
                effective = TopicConfig.from_dict(overrides, base=self._mgr.default_config)
                check_topic_overrides(overrides, effective)
                if name in self._mgr.topics():
                    raise TopicAlreadyExistsError(f"topic {name!r} already exists")
                return
            self._mgr.create_topic(name, partitions=count, config=dict(config) or None)
            log.info(
                "topic %s created with %d partitions",
                name,
                count,
                extra=event("topic_created", topic=name, partitions=count),
            )

    def delete_topic(self, name: str) -> None:
        refuse_internal(name, "delete")
        with self.broker.operation():
            self._mgr.delete_topic(name)
            self.broker.group_commit.forget_topic(name)
            queues: Any = self.broker.queues
            if queues is not None:
                queues.topic_deleted(name)
            self.broker.notifier.notify()  # waiting fetches re-read and see it gone
            log.info("topic %s deleted", name, extra=event("topic_deleted", topic=name))

    def list_topics(self, *, include_internal: bool = False) -> list[tuple[str, int]]:
        with self.broker.operation():
            out = []
            for name in sorted(self._mgr.topics()):
                if is_internal_topic(name) and not include_internal:
                    continue
                try:
                    out.append((name, len(self._mgr.topic(name).partitions)))
                except LogstreamError:  # deleted meanwhile
                    continue
            return out

    def describe_topics(self, names: Sequence[str], *, config: bool = True) -> list[TopicInfo]:
        """Partitions of each topic (every non-internal one when ``names`` is empty) and,
        unless ``config`` is False, its config as strings (a third of the cost)."""
        with self.broker.operation():
            if not names:
                names = [n for n in sorted(self._mgr.topics()) if not is_internal_topic(n)]
            return [self._describe(name, config) for name in names]

    def _describe(self, name: str, config: bool = True) -> TopicInfo:
        info = TopicInfo(name)
        if is_inbox(name):  # one partition, so a plain Producer can answer a request
            try:
                check_inbox_name(name)
            except LogstreamError as exc:
                info.error = exc
            else:
                info.partitions.append(PartitionInfo(0))
            return info
        try:
            topic = self._mgr.topic(name)
        except LogstreamError as exc:
            info.error = exc
            return info
        if config:
            info.config = _config_strings(topic.config)
        for index, plog in enumerate(topic.partitions):
            p = PartitionInfo(index)
            try:
                p.log_start_offset = plog.log_start_offset
                p.log_end_offset = plog.log_end_offset
                p.flushed_offset = plog.flushed_offset
                p.size_bytes = plog.size_bytes
                p.segment_count = plog.segment_count
                if plog.failed:
                    p.error = KafkaStorageError(plog.failed)
            except LogstreamError as exc:
                p.error = exc
            info.partitions.append(p)
        return info

    def alter_topic_config(
        self, name: str, set_values: Mapping[str, str], reset: Sequence[str]
    ) -> dict[str, str]:
        """Apply ``set_values``, return the ``reset`` keys to the broker default."""
        refuse_internal(name, "alter the config of")
        with self.broker.operation():
            updates: dict[str, object] = {normalize_key(k): v for k, v in set_values.items()}
            default = self._mgr.default_config.to_dict()
            for key in reset:
                k = normalize_key(key)
                if k in updates:
                    raise InvalidRequestError(f"config key {key!r} is both set and reset")
                updates[k] = default[k]
            if not updates:
                return _config_strings(self._mgr.topic(name).config)
            new = self._mgr.alter_topic_config(name, updates)
            log.info(
                "topic %s config altered: %s",
                name,
                sorted(updates),
                extra=event("topic_config_altered", topic=name, keys=sorted(updates)),
            )
            return _config_strings(new)

    def create_partitions(self, name: str, total_count: int) -> None:
        refuse_internal(name, "add partitions to")
        with self.broker.operation():
            self._check_partition_limit(name, total_count)
            self._mgr.add_partitions(name, total_count)
            queues: Any = self.broker.queues
            if queues is not None:
                queues.topic_grew(name)
            log.info(
                "topic %s now has %d partitions",
                name,
                total_count,
                extra=event("partitions_added", topic=name, partitions=total_count),
            )
