"""Queue-group administration (create, alter, describe, list, delete, peek, redrive), mixed
into :class:`~logstream.client.group_admin.GroupAdmin`. Each method is one RPC of the
Queue service; failures are the exact ``LogstreamError`` subclass (``GroupIdNotFoundError``,
``GroupKindMismatchError``, ``InvalidConfigError``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logstream.client import transport as tr
from logstream.protocol import queue_pb2
from logstream.protocol.queue_settings import SETTING_NAMES

if TYPE_CHECKING:
    from logstream.client.queue_message import QueueMessage


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """One partition (or the total: topic ``*``, partition -1). Ages and offsets are -1
    when there is nothing unfinished."""

    topic: str
    partition: int
    start_offset: int
    end_offset: int
    available: int
    unread: int
    acquired: int
    delayed: int
    dead_letter_pending: int
    acknowledged: int
    dead_lettered: int
    dropped: int
    redelivered: int
    oldest_unfinished_offset: int
    oldest_unfinished_age_ms: int
    depth: int
    parked: int
    expired: int  # expired before delivery (dead-lettered or dropped), since creation
    next_due_ms: int  # earliest due time of a delayed record (epoch ms), -1: none
    lost_to_retention: int = 0  # deleted by retention before they were finished


@dataclass(frozen=True, slots=True)
class QueueMemberInfo:
    member_id: str
    held: int
    client_id: str


@dataclass(frozen=True, slots=True)
class QueueGroupDescription:
    group: str
    settings: dict[str, Any]
    dead_letter_topic: str
    partitions: tuple[QueueDepth, ...]
    total: QueueDepth
    members: tuple[QueueMemberInfo, ...]
    invalid_schedule: int = 0  # unreadable schedule header values the broker ignored


@dataclass(frozen=True, slots=True)
class QueueGroupListing:
    group: str
    topics: tuple[str, ...]
    members: int
    depth: int
    acquired: int
    oldest_unfinished_age_ms: int


@dataclass(frozen=True, slots=True)
class RedriveItem:
    dead_letter_offset: int
    source_topic: str
    source_partition: int
    source_offset: int
    reason: str
    target_topic: str
    target_partition: int


def settings_message(values: dict[str, Any]) -> queue_pb2.QueueSettings:
    unknown = sorted(set(values) - set(SETTING_NAMES))
    if unknown:
        from logstream.errors import InvalidConfigError

        raise InvalidConfigError(f"unknown queue settings: {', '.join(unknown)}")
    pb = queue_pb2.QueueSettings()
    for k, v in values.items():
        if v is not None:
            setattr(pb, k, str(v) if k == "start" else v)
    return pb


def settings_dict(pb: Any) -> dict[str, Any]:
    out = {k: getattr(pb, k) for k in SETTING_NAMES}
    start = out["start"]
    out["start"] = int(start) if start.isdigit() else start
    return out


def _depth(pb: Any) -> QueueDepth:
    return QueueDepth(*(getattr(pb, f) for f in QueueDepth.__slots__))


class QueueAdminMixin:
    """Queue-group methods; the host class provides ``_transport`` and ``_timeout``."""

    _transport: tr.TransportLike
    _timeout: float

    def create_queue_group(
        self, group: str, *, topics: Sequence[str], **settings: Any
    ) -> dict[str, Any]:
        """Create ``group`` reading ``topics``; ``settings`` as in docs/queues.md."""
        resp = self._transport.create_queue_group(
            queue_pb2.CreateQueueGroupRequest(
                group=group, topics=list(topics), settings=settings_message(settings)
            ),
            timeout=self._timeout,
        )
        return settings_dict(resp.settings)

    def alter_queue_group(self, group: str, **settings: Any) -> dict[str, Any]:
        resp = self._transport.alter_queue_group(
            queue_pb2.AlterQueueGroupRequest(group=group, settings=settings_message(settings)),
            timeout=self._timeout,
        )
        return settings_dict(resp.settings)

    def describe_queue_group(self, group: str) -> QueueGroupDescription:
        r = self._transport.describe_queue_group(
            queue_pb2.DescribeQueueGroupRequest(group=group), timeout=self._timeout
        )
        return QueueGroupDescription(
            r.group,
            settings_dict(r.settings),
            r.dead_letter_topic,
            tuple(_depth(p) for p in r.partitions),
            _depth(r.total),
            tuple(QueueMemberInfo(m.member_id, m.held, m.client_id) for m in r.members),
            r.invalid_schedule,
        )

    def list_queue_groups(self) -> list[QueueGroupListing]:
        r = self._transport.list_queue_groups(
            queue_pb2.ListQueueGroupsRequest(), timeout=self._timeout
        )
        return [
            QueueGroupListing(
                g.group,
                tuple(g.topics),
                g.members,
                g.depth,
                g.acquired,
                g.oldest_unfinished_age_ms,
            )
            for g in r.groups
        ]

    def delete_queue_group(self, group: str, *, force: bool = False) -> None:
        self._transport.delete_queue_group(
            queue_pb2.DeleteQueueGroupRequest(group=group, force=force), timeout=self._timeout
        )

    def peek(self, group: str, max_records: int = 10) -> list[QueueMessage]:
        """Records a fetch would hand out now, not acquired (they cannot be settled)."""
        # here, not at the top: decoding records needs the codec and numpy, which `logstream
        # group list` and the other admin commands do without
        from logstream.client.queue_message import decode_records

        r = self._transport.queue_peek(
            queue_pb2.PeekRequest(group=group, max_records=max_records), timeout=self._timeout
        )
        return decode_records(r.records, None)

    def redrive(
        self,
        group: str,
        *,
        execute: bool = False,
        reasons: Sequence[str] = (),
        to_topic: str = "",
        max_records: int = 0,
    ) -> list[RedriveItem]:
        """Dead letters of ``group`` copied back to their source (or ``to_topic``): a dry
        run unless ``execute``. Returns what moved (or would move)."""
        r = self._transport.queue_redrive(
            queue_pb2.RedriveRequest(
                group=group,
                execute=execute,
                reasons=list(reasons),
                to_topic=to_topic,
                max_records=max_records,
            ),
            timeout=self._timeout,
        )
        return [
            RedriveItem(
                i.dead_letter_offset,
                i.source_topic,
                i.source_partition,
                i.source_offset,
                i.reason,
                i.target_topic,
                i.target_partition,
            )
            for i in r.items
        ]
