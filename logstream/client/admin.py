"""Topic administration: create, delete, list, describe, alter config, add partitions, and
offset look-ups. Every method is one RPC; errors come back as the exact ``LogstreamError``
subclass (per-topic ``error_code`` -> :func:`logstream.protocol.status.error_for_code`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from logstream.client import acls as acl_calls
from logstream.client.acls import AclBinding, QuotaLimits
from logstream.client.admin_connection import AdminConnection
from logstream.errors import LogstreamError, UnknownServerError
from logstream.protocol import admin_pb2, log_pb2
from logstream.protocol.status import error_for_code
from logstream.types import EARLIEST, LATEST, TopicPartition


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """One entry of :meth:`Admin.list_topics`."""

    name: str
    partitions: int
    internal: bool = False


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    partition: int
    log_start_offset: int
    log_end_offset: int
    flushed_offset: int
    size_bytes: int
    segment_count: int
    error: LogstreamError | None = None

    @property
    def records(self) -> int:
        """Records currently retained (log end - log start)."""
        return self.log_end_offset - self.log_start_offset


@dataclass(frozen=True, slots=True)
class TopicDescription:
    """One entry of :meth:`Admin.describe_topics`."""

    name: str
    partitions: list[PartitionInfo]
    config: dict[str, str] = field(default_factory=dict)
    internal: bool = False

    @property
    def size_bytes(self) -> int:
        return sum(p.size_bytes for p in self.partitions)


def _spec(spec: str | int) -> int:
    if spec == "earliest":
        return EARLIEST
    if spec == "latest":
        return LATEST
    if isinstance(spec, int) and spec >= 0:
        return spec
    from logstream.errors import InvalidRequestError

    raise InvalidRequestError(f"offset spec must be 'earliest', 'latest' or a timestamp: {spec!r}")


class Admin(AdminConnection):
    """Manage topics. Thread-safe (each call is one independent RPC)."""

    def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, object] | None = None
    ) -> None:
        """Create a topic. Raises ``TopicAlreadyExistsError``, ``InvalidTopicError``,
        ``InvalidPartitionsError``, ``InvalidConfigError``."""
        self.create_topics([(name, partitions, config)])

    def create_topics(self, topics: Iterable[tuple[str, int, Mapping[str, object] | None]]) -> None:
        req = admin_pb2.CreateTopicsRequest(
            topics=[
                admin_pb2.TopicSpec(
                    name=name,
                    partitions=partitions,
                    config={k: str(v) for k, v in (config or {}).items()},
                )
                for name, partitions, config in topics
            ]
        )
        resp = self._transport.create_topics(req, timeout=self._timeout)
        for r in resp.topics:
            if r.error_code:
                raise error_for_code(r.error_code, r.error_message or r.name)

    def delete_topic(self, name: str) -> None:
        resp = self._transport.delete_topics(
            admin_pb2.DeleteTopicsRequest(names=[name]), timeout=self._timeout
        )
        for r in resp.topics:
            if r.error_code:
                raise error_for_code(r.error_code, r.error_message or r.name)

    def list_topics(self, include_internal: bool = False) -> list[TopicInfo]:
        resp = self._transport.list_topics(
            admin_pb2.ListTopicsRequest(include_internal=include_internal), timeout=self._timeout
        )
        return [TopicInfo(t.name, t.partitions, t.internal) for t in resp.topics]

    def describe_topics(self, names: Iterable[str] | None = None) -> list[TopicDescription]:
        """Partitions (offsets, sizes) and config of the named topics (all when None).
        A named topic that does not exist raises ``UnknownTopicOrPartitionError``."""
        resp = self._transport.describe_topics(
            admin_pb2.DescribeTopicsRequest(names=list(names or ())), timeout=self._timeout
        )
        out = []
        for t in resp.topics:
            if t.error_code:
                raise error_for_code(t.error_code, t.error_message or t.name)
            parts = [
                PartitionInfo(
                    partition=p.partition,
                    log_start_offset=p.log_start_offset,
                    log_end_offset=p.log_end_offset,
                    flushed_offset=p.flushed_offset,
                    size_bytes=p.size_bytes,
                    segment_count=p.segment_count,
                    error=error_for_code(p.error_code, p.error_message) if p.error_code else None,
                )
                for p in sorted(t.partitions, key=lambda p: p.partition)
            ]
            out.append(TopicDescription(t.name, parts, dict(t.config), t.internal))
        return out

    def describe_topic(self, name: str) -> TopicDescription:
        return self.describe_topics([name])[0]

    def alter_topic_config(
        self,
        name: str,
        set: Mapping[str, object] | None = None,
        reset: Iterable[str] = (),
    ) -> dict[str, str]:
        """Change config keys (``set``) or return them to the broker default (``reset``);
        returns the topic's resulting config."""
        resp = self._transport.alter_topic_config(
            admin_pb2.AlterTopicConfigRequest(
                name=name, set={k: str(v) for k, v in (set or {}).items()}, reset=list(reset)
            ),
            timeout=self._timeout,
        )
        r = resp.result
        if r.error_code:
            raise error_for_code(r.error_code, r.error_message or name)
        return dict(resp.config)

    def add_partitions(self, name: str, total: int) -> None:
        """Grow ``name`` to ``total`` partitions (never shrinks)."""
        resp = self._transport.create_partitions(
            admin_pb2.CreatePartitionsRequest(name=name, total_count=total), timeout=self._timeout
        )
        r = resp.result
        if r.error_code:
            raise error_for_code(r.error_code, r.error_message or name)

    def list_offsets(self, specs: Mapping[TopicPartition, str | int]) -> dict[TopicPartition, int]:
        """Offsets by spec: ``"earliest"`` (log start), ``"latest"`` (log end) or a timestamp
        in ms (the first offset whose timestamp is >= it; the log end when there is none)."""
        req = log_pb2.ListOffsetsRequest(
            partitions=[
                log_pb2.ListOffsetsPartition(topic=tp[0], partition=tp[1], timestamp=_spec(spec))
                for tp, spec in specs.items()
            ]
        )
        resp = self._transport.list_offsets(req, timeout=self._timeout)
        out: dict[TopicPartition, int] = {}
        for p in resp.partitions:
            if p.error_code:
                raise error_for_code(p.error_code, p.error_message or f"{p.topic}-{p.partition}")
            out[TopicPartition(p.topic, p.partition)] = p.offset
        if len(out) < len(specs):
            raise UnknownServerError("ListOffsets answered fewer partitions than asked")
        return out

    def create_acls(self, acls: Iterable[AclBinding]) -> int:
        """Add rules (docs/security.md); returns how many were new. Needs cluster alter."""
        return acl_calls.create_acls(self._transport, acls, self._timeout)

    def list_acls(self, flt: AclBinding | None = None) -> list[AclBinding]:
        """The rules matching ``flt`` (empty fields match anything). Needs cluster describe."""
        return acl_calls.list_acls(self._transport, flt, self._timeout)

    def create_user(self, name: str, *, rotate: bool = False) -> str:
        """A new user (or with ``rotate`` a new token for one); returns its token, which
        cannot be shown again. Needs cluster alter on a broker with --auth --acls."""
        return acl_calls.create_user(self._transport, name, rotate, self._timeout)

    def delete_user(self, name: str) -> None:
        """Delete a user: its token stops working at once. Needs cluster alter."""
        acl_calls.delete_user(self._transport, name, self._timeout)

    def list_users(self) -> list[tuple[str, int]]:
        """``(name, created_ms)`` of every user. Needs cluster describe."""
        return acl_calls.list_users(self._transport, self._timeout)

    def set_quota(
        self,
        principal: str,
        *,
        produce_bytes_per_s: float | None = None,
        fetch_bytes_per_s: float | None = None,
        requests_per_s: float | None = None,
    ) -> QuotaLimits:
        """Change ``principal``'s quotas at once (``*``: everyone without their own; None
        keeps a value, 0 is unlimited); the broker keeps them in its quota file. Needs
        cluster alter on a broker with --auth --acls."""
        changes = {
            k: v
            for k, v in (
                ("produce_bytes_per_s", produce_bytes_per_s),
                ("fetch_bytes_per_s", fetch_bytes_per_s),
                ("requests_per_s", requests_per_s),
            )
            if v is not None
        }
        return acl_calls.set_quota(self._transport, principal, changes, self._timeout)

    def list_quotas(self, principal: str = "") -> list[QuotaLimits]:
        """Every principal's quotas (or one's). Needs cluster describe."""
        return acl_calls.list_quotas(self._transport, principal, self._timeout)

    def delete_acls(self, flt: AclBinding) -> list[AclBinding]:
        """Remove every rule matching ``flt``; returns them. Open streams the removal
        forbids are ended. Needs cluster alter."""
        return acl_calls.delete_acls(self._transport, flt, self._timeout)
