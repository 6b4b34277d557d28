"""Admin APIs: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs.

Each is the broker's ``AdminHandler`` call the gRPC Admin service makes. Differences from
Kafka: one broker, so replication factors and replica assignments are ignored (-1 or 1
accepted); topic config names are logstream's (``retention.ms`` and ``retention_ms``
both name ``retention_ms``; see docs/broker.md for the keys); DescribeConfigs answers for
topics (resource type 2) and reports every config as a dynamic topic config when the topic
overrides it, the broker default otherwise.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from logstream.broker.admin import AdminHandler
from logstream.broker.broker import Broker
from logstream.errors import InvalidRequestError, LogstreamError
from logstream.kafka import wire
from logstream.kafka.access import Access
from logstream.kafka.log_apis import error_code
from logstream.kafka.wire import Request, build

VERSIONS = {
    wire.CREATE_TOPICS: (2, 7),
    wire.DELETE_TOPICS: (1, 5),
    wire.CREATE_PARTITIONS: (0, 3),
    wire.DESCRIBE_CONFIGS: (1, 4),
}

_TOPIC_RESOURCE = 2
_SOURCE_TOPIC = 1  # DYNAMIC_TOPIC_CONFIG
_SOURCE_DEFAULT = 5  # DEFAULT_CONFIG


class AdminApis:
    def __init__(self, broker: Broker, access: Access | None = None) -> None:
        self.admin = AdminHandler(broker)
        self.broker = broker
        self.access = access or Access()

    def _check(self, req: Request, name: str, operation: str) -> None:
        refused = self.access.refused(req.principal, "topic", name, operation)
        if refused is not None:
            raise refused

    def handlers(self) -> dict[int, Any]:
        return {
            wire.CREATE_TOPICS: self.create_topics,
            wire.DELETE_TOPICS: self.delete_topics,
            wire.CREATE_PARTITIONS: self.create_partitions,
            wire.DESCRIBE_CONFIGS: self.describe_configs,
        }

    def create_topics(self, req: Request) -> Any:
        mod = wire.response_module(wire.CREATE_TOPICS, req.api_version)
        results = []
        for topic in req.body.topics:
            exc: LogstreamError | None = None
            try:
                self._check(req, topic.name, "create")
                if topic.replication_factor not in (-1, 1) or topic.assignments:
                    raise InvalidRequestError(
                        "one broker: replication factor must be 1 (or -1), no replica assignment"
                    )
                configs = {c.name: c.value for c in topic.configs if c.value is not None}
                self.admin.create_topic(
                    topic.name,
                    max(int(topic.num_partitions), 0),
                    configs,
                    validate_only=bool(req.body.validate_only),
                )
            except LogstreamError as err:
                exc = err
            results.append(
                build(
                    mod.CreatableTopicResult,
                    name=topic.name,
                    error_code=error_code(exc),
                    error_message=str(exc) if exc else None,
                    num_partitions=-1 if exc else self._partitions(topic.name, topic),
                    replication_factor=-1 if exc else 1,
                    configs=None,
                )
            )
        return build(mod.CreateTopicsResponse, topics=tuple(results))

    def _partitions(self, name: str, topic: Any) -> int:
        try:
            return len(self.broker.manager.topic(name).partitions)
        except LogstreamError:  # validate_only: nothing was created
            return int(topic.num_partitions) or self.broker.config.default_partitions

    def delete_topics(self, req: Request) -> Any:
        mod = wire.response_module(wire.DELETE_TOPICS, req.api_version)
        names = getattr(req.body, "topic_names", None)
        if names is None:  # v6+: topics by name or id
            names = [t.name for t in req.body.topics]
        results = []
        for name in names:
            exc: LogstreamError | None = None
            try:
                self._check(req, name, "delete")
                self.admin.delete_topic(name)
            except LogstreamError as err:
                exc = err
            results.append(
                build(
                    mod.DeletableTopicResult,
                    name=name,
                    error_code=error_code(exc),
                    error_message=str(exc) if exc else None,
                )
            )
        return build(mod.DeleteTopicsResponse, responses=tuple(results))

    def create_partitions(self, req: Request) -> Any:
        mod = wire.response_module(wire.CREATE_PARTITIONS, req.api_version)
        results = []
        for topic in req.body.topics:
            exc: LogstreamError | None = None
            try:
                self._check(req, topic.name, "alter")
                if req.body.validate_only:
                    current = len(self.broker.manager.topic(topic.name).partitions)
                    if topic.count <= current:
                        raise InvalidRequestError(f"topic already has {current} partitions")
                else:
                    self.admin.create_partitions(topic.name, int(topic.count))
            except LogstreamError as err:
                exc = err
            results.append(
                build(
                    mod.CreatePartitionsTopicResult,
                    name=topic.name,
                    error_code=error_code(exc),
                    error_message=str(exc) if exc else None,
                )
            )
        return build(mod.CreatePartitionsResponse, results=tuple(results))

    def describe_configs(self, req: Request) -> Any:
        mod = wire.response_module(wire.DESCRIBE_CONFIGS, req.api_version)
        results = []
        for res in req.body.resources:
            configs: tuple[Any, ...] = ()
            exc: LogstreamError | None = None
            try:
                if res.resource_type != _TOPIC_RESOURCE:
                    raise InvalidRequestError("only topic configs can be described")
                self._check(req, res.resource_name, "describe")
                with self.broker.operation():
                    topic = self.broker.manager.topic(res.resource_name)
                    values = topic.config.to_dict()
                    overrides = set(topic.overrides)
                keys = res.configuration_keys
                configs = tuple(
                    build(
                        mod.DescribeConfigsResourceResult,
                        name=key,
                        value=str(value),
                        read_only=False,
                        config_source=_SOURCE_TOPIC if key in overrides else _SOURCE_DEFAULT,
                        is_default=key not in overrides,
                        is_sensitive=False,
                        synonyms=(),
                    )
                    for key, value in sorted(values.items())
                    if keys is None or key in keys or key.replace("_", ".") in keys
                )
            except LogstreamError as err:
                exc = err
            results.append(
                build(
                    mod.DescribeConfigsResult,
                    error_code=error_code(exc) if exc else ErrorCode.none,
                    error_message=str(exc) if exc else None,
                    resource_type=res.resource_type,
                    resource_name=res.resource_name,
                    configs=configs,
                )
            )
        return build(mod.DescribeConfigsResponse, results=tuple(results))
