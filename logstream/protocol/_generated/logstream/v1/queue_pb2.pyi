from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SettleKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SETTLE_ACK: _ClassVar[SettleKind]
    SETTLE_NACK: _ClassVar[SettleKind]
    SETTLE_REJECT: _ClassVar[SettleKind]
    SETTLE_EXTEND: _ClassVar[SettleKind]
SETTLE_ACK: SettleKind
SETTLE_NACK: SettleKind
SETTLE_REJECT: SettleKind
SETTLE_EXTEND: SettleKind

class QueueSettings(_message.Message):
    __slots__ = ("lease_ms", "max_deliveries", "backoff_initial_ms", "backoff_max_ms", "dead_letter_topic", "key_ordered", "auto_ack", "window_size", "start", "expired_action")
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_INITIAL_MS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MAX_MS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_TOPIC_FIELD_NUMBER: _ClassVar[int]
    KEY_ORDERED_FIELD_NUMBER: _ClassVar[int]
    AUTO_ACK_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_ACTION_FIELD_NUMBER: _ClassVar[int]
    lease_ms: int
    max_deliveries: int
    backoff_initial_ms: int
    backoff_max_ms: int
    dead_letter_topic: str
    key_ordered: bool
    auto_ack: bool
    window_size: int
    start: str
    expired_action: str
    def __init__(self, lease_ms: _Optional[int] = ..., max_deliveries: _Optional[int] = ..., backoff_initial_ms: _Optional[int] = ..., backoff_max_ms: _Optional[int] = ..., dead_letter_topic: _Optional[str] = ..., key_ordered: _Optional[bool] = ..., auto_ack: _Optional[bool] = ..., window_size: _Optional[int] = ..., start: _Optional[str] = ..., expired_action: _Optional[str] = ...) -> None: ...

class Settlement(_message.Message):
    __slots__ = ("topic", "partition", "kind", "offsets", "delay_ms", "reason", "lease_ms", "offset_runs")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_RUNS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    kind: SettleKind
    offsets: _containers.RepeatedScalarFieldContainer[int]
    delay_ms: int
    reason: str
    lease_ms: int
    offset_runs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., kind: _Optional[_Union[SettleKind, str]] = ..., offsets: _Optional[_Iterable[int]] = ..., delay_ms: _Optional[int] = ..., reason: _Optional[str] = ..., lease_ms: _Optional[int] = ..., offset_runs: _Optional[_Iterable[int]] = ...) -> None: ...

class SettleResult(_message.Message):
    __slots__ = ("topic", "partition", "kind", "offsets", "error_codes", "error_messages")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODES_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    kind: SettleKind
    offsets: _containers.RepeatedScalarFieldContainer[int]
    error_codes: _containers.RepeatedScalarFieldContainer[int]
    error_messages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., kind: _Optional[_Union[SettleKind, str]] = ..., offsets: _Optional[_Iterable[int]] = ..., error_codes: _Optional[_Iterable[int]] = ..., error_messages: _Optional[_Iterable[str]] = ...) -> None: ...

class QueueJoinRequest(_message.Message):
    __slots__ = ("group", "member_id", "topics", "create", "client_id")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    group: str
    member_id: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    create: bool
    client_id: str
    def __init__(self, group: _Optional[str] = ..., member_id: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ..., create: _Optional[bool] = ..., client_id: _Optional[str] = ...) -> None: ...

class QueueJoinResponse(_message.Message):
    __slots__ = ("settings", "topics", "offset_runs")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_RUNS_FIELD_NUMBER: _ClassVar[int]
    settings: QueueSettings
    topics: _containers.RepeatedScalarFieldContainer[str]
    offset_runs: bool
    def __init__(self, settings: _Optional[_Union[QueueSettings, _Mapping]] = ..., topics: _Optional[_Iterable[str]] = ..., offset_runs: _Optional[bool] = ...) -> None: ...

class QueueLeaveRequest(_message.Message):
    __slots__ = ("group", "member_id", "settle")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    SETTLE_FIELD_NUMBER: _ClassVar[int]
    group: str
    member_id: str
    settle: _containers.RepeatedCompositeFieldContainer[Settlement]
    def __init__(self, group: _Optional[str] = ..., member_id: _Optional[str] = ..., settle: _Optional[_Iterable[_Union[Settlement, _Mapping]]] = ...) -> None: ...

class QueueLeaveResponse(_message.Message):
    __slots__ = ("results", "released")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SettleResult]
    released: int
    def __init__(self, results: _Optional[_Iterable[_Union[SettleResult, _Mapping]]] = ..., released: _Optional[int] = ...) -> None: ...

class QueueFetchRequest(_message.Message):
    __slots__ = ("group", "member_id", "max_records", "max_wait_ms", "lease_ms", "settle", "max_bytes", "replies", "offset_runs")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    SETTLE_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    OFFSET_RUNS_FIELD_NUMBER: _ClassVar[int]
    group: str
    member_id: str
    max_records: int
    max_wait_ms: int
    lease_ms: int
    settle: _containers.RepeatedCompositeFieldContainer[Settlement]
    max_bytes: int
    replies: _containers.RepeatedCompositeFieldContainer[QueueReply]
    offset_runs: bool
    def __init__(self, group: _Optional[str] = ..., member_id: _Optional[str] = ..., max_records: _Optional[int] = ..., max_wait_ms: _Optional[int] = ..., lease_ms: _Optional[int] = ..., settle: _Optional[_Iterable[_Union[Settlement, _Mapping]]] = ..., max_bytes: _Optional[int] = ..., replies: _Optional[_Iterable[_Union[QueueReply, _Mapping]]] = ..., offset_runs: _Optional[bool] = ...) -> None: ...

class QueueReply(_message.Message):
    __slots__ = ("inbox", "batch")
    INBOX_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    inbox: str
    batch: bytes
    def __init__(self, inbox: _Optional[str] = ..., batch: _Optional[bytes] = ...) -> None: ...

class QueueReplyResult(_message.Message):
    __slots__ = ("error_code", "error_message")
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    error_code: int
    error_message: str
    def __init__(self, error_code: _Optional[int] = ..., error_message: _Optional[str] = ...) -> None: ...

class QueueRecords(_message.Message):
    __slots__ = ("topic", "partition", "batches", "offsets", "delivery_counts", "offset_runs", "delivery_count_runs")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNTS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_RUNS_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_RUNS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    batches: bytes
    offsets: _containers.RepeatedScalarFieldContainer[int]
    delivery_counts: _containers.RepeatedScalarFieldContainer[int]
    offset_runs: _containers.RepeatedScalarFieldContainer[int]
    delivery_count_runs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., batches: _Optional[bytes] = ..., offsets: _Optional[_Iterable[int]] = ..., delivery_counts: _Optional[_Iterable[int]] = ..., offset_runs: _Optional[_Iterable[int]] = ..., delivery_count_runs: _Optional[_Iterable[int]] = ...) -> None: ...

class QueueFetchResponse(_message.Message):
    __slots__ = ("results", "records", "throttle_time_ms", "reply_results", "lease_ms", "backlog", "members")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REPLY_RESULTS_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SettleResult]
    records: _containers.RepeatedCompositeFieldContainer[QueueRecords]
    throttle_time_ms: int
    reply_results: _containers.RepeatedCompositeFieldContainer[QueueReplyResult]
    lease_ms: int
    backlog: int
    members: int
    def __init__(self, results: _Optional[_Iterable[_Union[SettleResult, _Mapping]]] = ..., records: _Optional[_Iterable[_Union[QueueRecords, _Mapping]]] = ..., throttle_time_ms: _Optional[int] = ..., reply_results: _Optional[_Iterable[_Union[QueueReplyResult, _Mapping]]] = ..., lease_ms: _Optional[int] = ..., backlog: _Optional[int] = ..., members: _Optional[int] = ...) -> None: ...

class QueueSessionRequest(_message.Message):
    __slots__ = ("group", "member_id", "credit", "lease_ms", "settle", "replies", "flush")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    SETTLE_FIELD_NUMBER: _ClassVar[int]
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    group: str
    member_id: str
    credit: int
    lease_ms: int
    settle: _containers.RepeatedCompositeFieldContainer[Settlement]
    replies: _containers.RepeatedCompositeFieldContainer[QueueReply]
    flush: bool
    def __init__(self, group: _Optional[str] = ..., member_id: _Optional[str] = ..., credit: _Optional[int] = ..., lease_ms: _Optional[int] = ..., settle: _Optional[_Iterable[_Union[Settlement, _Mapping]]] = ..., replies: _Optional[_Iterable[_Union[QueueReply, _Mapping]]] = ..., flush: _Optional[bool] = ...) -> None: ...

class QueueSessionResponse(_message.Message):
    __slots__ = ("records", "answered", "reply_results", "results", "throttle_time_ms")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    REPLY_RESULTS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[QueueRecords]
    answered: int
    reply_results: _containers.RepeatedCompositeFieldContainer[QueueReplyResult]
    results: _containers.RepeatedCompositeFieldContainer[SettleResult]
    throttle_time_ms: int
    def __init__(self, records: _Optional[_Iterable[_Union[QueueRecords, _Mapping]]] = ..., answered: _Optional[int] = ..., reply_results: _Optional[_Iterable[_Union[QueueReplyResult, _Mapping]]] = ..., results: _Optional[_Iterable[_Union[SettleResult, _Mapping]]] = ..., throttle_time_ms: _Optional[int] = ...) -> None: ...

class QueueSettleRequest(_message.Message):
    __slots__ = ("group", "member_id", "settle")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    SETTLE_FIELD_NUMBER: _ClassVar[int]
    group: str
    member_id: str
    settle: _containers.RepeatedCompositeFieldContainer[Settlement]
    def __init__(self, group: _Optional[str] = ..., member_id: _Optional[str] = ..., settle: _Optional[_Iterable[_Union[Settlement, _Mapping]]] = ...) -> None: ...

class QueueSettleResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SettleResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SettleResult, _Mapping]]] = ...) -> None: ...

class CreateQueueGroupRequest(_message.Message):
    __slots__ = ("group", "topics", "settings")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    group: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    settings: QueueSettings
    def __init__(self, group: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ..., settings: _Optional[_Union[QueueSettings, _Mapping]] = ...) -> None: ...

class CreateQueueGroupResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: QueueSettings
    def __init__(self, settings: _Optional[_Union[QueueSettings, _Mapping]] = ...) -> None: ...

class AlterQueueGroupRequest(_message.Message):
    __slots__ = ("group", "settings")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    group: str
    settings: QueueSettings
    def __init__(self, group: _Optional[str] = ..., settings: _Optional[_Union[QueueSettings, _Mapping]] = ...) -> None: ...

class AlterQueueGroupResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: QueueSettings
    def __init__(self, settings: _Optional[_Union[QueueSettings, _Mapping]] = ...) -> None: ...

class DescribeQueueGroupRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class QueueDepth(_message.Message):
    __slots__ = ("topic", "partition", "start_offset", "end_offset", "available", "unread", "acquired", "delayed", "dead_letter_pending", "acknowledged", "dead_lettered", "dropped", "redelivered", "oldest_unfinished_offset", "oldest_unfinished_age_ms", "depth", "parked", "expired", "next_due_ms", "lost_to_retention")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    START_OFFSET_FIELD_NUMBER: _ClassVar[int]
    END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNREAD_FIELD_NUMBER: _ClassVar[int]
    ACQUIRED_FIELD_NUMBER: _ClassVar[int]
    DELAYED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_PENDING_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    REDELIVERED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNFINISHED_OFFSET_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNFINISHED_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    PARKED_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_MS_FIELD_NUMBER: _ClassVar[int]
    LOST_TO_RETENTION_FIELD_NUMBER: _ClassVar[int]
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
    expired: int
    next_due_ms: int
    lost_to_retention: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., start_offset: _Optional[int] = ..., end_offset: _Optional[int] = ..., available: _Optional[int] = ..., unread: _Optional[int] = ..., acquired: _Optional[int] = ..., delayed: _Optional[int] = ..., dead_letter_pending: _Optional[int] = ..., acknowledged: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., dropped: _Optional[int] = ..., redelivered: _Optional[int] = ..., oldest_unfinished_offset: _Optional[int] = ..., oldest_unfinished_age_ms: _Optional[int] = ..., depth: _Optional[int] = ..., parked: _Optional[int] = ..., expired: _Optional[int] = ..., next_due_ms: _Optional[int] = ..., lost_to_retention: _Optional[int] = ...) -> None: ...

class QueueMember(_message.Message):
    __slots__ = ("member_id", "held", "client_id")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    held: int
    client_id: str
    def __init__(self, member_id: _Optional[str] = ..., held: _Optional[int] = ..., client_id: _Optional[str] = ...) -> None: ...

class DescribeQueueGroupResponse(_message.Message):
    __slots__ = ("group", "settings", "dead_letter_topic", "partitions", "total", "members", "invalid_schedule")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    INVALID_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    group: str
    settings: QueueSettings
    dead_letter_topic: str
    partitions: _containers.RepeatedCompositeFieldContainer[QueueDepth]
    total: QueueDepth
    members: _containers.RepeatedCompositeFieldContainer[QueueMember]
    invalid_schedule: int
    def __init__(self, group: _Optional[str] = ..., settings: _Optional[_Union[QueueSettings, _Mapping]] = ..., dead_letter_topic: _Optional[str] = ..., partitions: _Optional[_Iterable[_Union[QueueDepth, _Mapping]]] = ..., total: _Optional[_Union[QueueDepth, _Mapping]] = ..., members: _Optional[_Iterable[_Union[QueueMember, _Mapping]]] = ..., invalid_schedule: _Optional[int] = ...) -> None: ...

class ListQueueGroupsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueGroupSummary(_message.Message):
    __slots__ = ("group", "topics", "members", "depth", "acquired", "oldest_unfinished_age_ms")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    ACQUIRED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNFINISHED_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    group: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    members: int
    depth: int
    acquired: int
    oldest_unfinished_age_ms: int
    def __init__(self, group: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ..., members: _Optional[int] = ..., depth: _Optional[int] = ..., acquired: _Optional[int] = ..., oldest_unfinished_age_ms: _Optional[int] = ...) -> None: ...

class ListQueueGroupsResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[QueueGroupSummary]
    def __init__(self, groups: _Optional[_Iterable[_Union[QueueGroupSummary, _Mapping]]] = ...) -> None: ...

class DeleteQueueGroupRequest(_message.Message):
    __slots__ = ("group", "force")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    group: str
    force: bool
    def __init__(self, group: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DeleteQueueGroupResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeekRequest(_message.Message):
    __slots__ = ("group", "max_records")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    group: str
    max_records: int
    def __init__(self, group: _Optional[str] = ..., max_records: _Optional[int] = ...) -> None: ...

class PeekResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[QueueRecords]
    def __init__(self, records: _Optional[_Iterable[_Union[QueueRecords, _Mapping]]] = ...) -> None: ...

class RedriveRequest(_message.Message):
    __slots__ = ("group", "execute", "reasons", "to_topic", "max_records")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    TO_TOPIC_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    group: str
    execute: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    to_topic: str
    max_records: int
    def __init__(self, group: _Optional[str] = ..., execute: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ..., to_topic: _Optional[str] = ..., max_records: _Optional[int] = ...) -> None: ...

class RedriveItem(_message.Message):
    __slots__ = ("dead_letter_offset", "source_topic", "source_partition", "source_offset", "reason", "target_topic", "target_partition")
    DEAD_LETTER_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PARTITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TARGET_TOPIC_FIELD_NUMBER: _ClassVar[int]
    TARGET_PARTITION_FIELD_NUMBER: _ClassVar[int]
    dead_letter_offset: int
    source_topic: str
    source_partition: int
    source_offset: int
    reason: str
    target_topic: str
    target_partition: int
    def __init__(self, dead_letter_offset: _Optional[int] = ..., source_topic: _Optional[str] = ..., source_partition: _Optional[int] = ..., source_offset: _Optional[int] = ..., reason: _Optional[str] = ..., target_topic: _Optional[str] = ..., target_partition: _Optional[int] = ...) -> None: ...

class RedriveResponse(_message.Message):
    __slots__ = ("items", "executed")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RedriveItem]
    executed: bool
    def __init__(self, items: _Optional[_Iterable[_Union[RedriveItem, _Mapping]]] = ..., executed: _Optional[bool] = ...) -> None: ...
