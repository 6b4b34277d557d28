"""The one exception tree of logstream, shared by codec, storage, broker, client and CLI.

Every error has a stable numeric ``code`` (never reused or renumbered once released), a
Kafka-style ``name`` and a ``retriable`` flag that says whether repeating the same request
later may succeed. The broker puts ``code`` in every response; the client turns a code back
into the same class with :func:`for_code`. Unknown codes become :class:`UnknownServerError`.

::

    LogstreamError                         base: catch this in applications and the CLI
    ├── UnknownServerError           (-1)  the other side failed in a way it could not name
    ├── CorruptRecordError           (2)   CRC mismatch, truncated or malformed batch
    │   ├── InvalidBatchError        (87)  well-formed bytes that break a rule (counts, magic)
    ├── OffsetOutOfRangeError        (1)   offset below the log start or above the log end
    ├── UnknownTopicOrPartitionError (3)   no such topic or partition (retriable: may be created)
    ├── MessageTooLargeError         (10)  batch bigger than max_batch_bytes
    ├── InvalidTopicError            (17)  topic name breaks the naming rules
    ├── RecordListTooLargeError      (18)  request bigger than the request limit
    ├── InvalidRequiredAcksError     (21)  acks mode is not none/leader/flushed
    ├── IllegalGenerationError       (22)  commit or heartbeat from a stale generation (epoch)
    │   └── CommitFailedError        (1003) client: a group commit was refused (fenced/moved)
    ├── InconsistentGroupProtocolError (23) a Kafka client's group protocols match no member's
    ├── UnknownMemberIdError         (25)  member is not (or no longer) in the group
    ├── RebalanceInProgressError     (27)  group is rebalancing; rejoin (retriable)
    ├── InvalidSessionTimeoutError   (26)
    ├── InvalidCommitOffsetSizeError (28)
    ├── TopicAlreadyExistsError      (36)
    ├── InvalidPartitionsError       (37)  bad partition count
    ├── InvalidRequestError          (42)  a malformed or contradictory request
    │   ├── InvalidProducerNameError (1005) producer name too long for InitProducerId
    │   ├── InvalidQueueDelayError   (1104) queue: negative delay or non-positive lease
    │   └── InvalidScheduleError     (1110) a delivery time or TTL out of range (also a ValueError)
    ├── InternalTopicReadOnlyError   (1004) clients may read and describe an internal topic, no more
    ├── InvalidConfigError           (40)  unknown config key or a bad value
    ├── OutOfOrderSequenceError      (45)  idempotent producer: a gap in sequence numbers
    ├── DuplicateSequenceError       (46)  idempotent producer: already written (informational)
    ├── InvalidProducerEpochError    (47)  a newer producer with the same id exists (fenced)
    ├── InvalidTimestampError        (32)
    ├── NonEmptyGroupError           (68)  group still has members (delete, reset)
    ├── GroupIdNotFoundError         (69)
    ├── TopicAuthorizationFailedError (29) forbidden, or missing: the same answer
    ├── GroupAuthorizationFailedError (30)
    ├── ClusterAuthorizationFailedError (31)
    ├── AuthenticationFailedError    (58)  no valid token or client certificate
    ├── KafkaStorageError            (56)  the disk failed under us: flush/fsync error, disk full
    ├── RequestTimedOutError         (7)   retriable
    │   ├── BufferExhaustedError     (1002) producer buffer full for max_block_ms (retriable)
    │   └── RequestTimeoutError      (1201) request/reply: no reply within the timeout
    ├── BrokerNotAvailableError      (8)   cannot reach the broker (retriable)
    ├── ThrottlingQuotaExceededError (89)  broker's or connection's request-byte cap is full
    ├── ConnectionLimitExceededError (1006) too many connections / streams from an address
    ├── ClientClosedError            (1001) the client object was closed by its owner
    ├── QueueRecordNotHeldError      (1101) queue: record is in the window, not held by you
    ├── QueueRecordFinishedError     (1102) queue: record already acked or dead-lettered
    ├── QueueOffsetNotInWindowError  (1103) queue: offset never handed out by this group
    └── GroupKindMismatchError       (1105) a consumer group used as a queue group, or back

How errors differ: ``CorruptRecordError`` means the bytes are damaged (a retry of the same
bytes will fail again); ``InvalidBatchError`` means intact bytes that break a rule.
``KafkaStorageError`` means the broker's disk misbehaved: the data you sent may or may not
be stored, so the partition stops acknowledging until an operator looks. ``ClientClosedError``
is the caller's own doing; ``BrokerNotAvailableError`` is the network's.
"""

from __future__ import annotations

from typing import ClassVar


class LogstreamError(Exception):
    """Base class. ``code``, ``name`` and ``retriable`` are class-level facts."""

    code: ClassVar[int] = -1
    name: ClassVar[str] = "UNKNOWN_SERVER_ERROR"
    retriable: ClassVar[bool] = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.name)
        self.message = message or self.name

    def __str__(self) -> str:
        return self.message


class UnknownServerError(LogstreamError):
    """An error the other side could not (or we could not) name."""

    code = -1
    name = "UNKNOWN_SERVER_ERROR"


class OffsetOutOfRangeError(LogstreamError):
    """The requested offset is outside [log start offset, log end offset]."""

    code = 1
    name = "OFFSET_OUT_OF_RANGE"

    def __init__(
        self, message: str = "", *, earliest: int | None = None, latest: int | None = None
    ) -> None:
        super().__init__(message)
        self.earliest = earliest
        self.latest = latest


class CorruptRecordError(LogstreamError):
    """The bytes of a batch are damaged: CRC mismatch, truncation, impossible lengths.

    Where the reader knows them, ``topic``, ``partition`` and the damaged offset range
    ``first_offset``..``last_offset`` (inclusive; ``last_offset`` None when the damage
    hides where it ends) name what cannot be served: a consumer can seek past it.
    """

    code = 2
    name = "CORRUPT_MESSAGE"

    def __init__(
        self,
        message: str = "",
        *,
        topic: str | None = None,
        partition: int | None = None,
        first_offset: int | None = None,
        last_offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.topic = topic
        self.partition = partition
        self.first_offset = first_offset
        self.last_offset = last_offset


class InvalidBatchError(CorruptRecordError):
    """Intact bytes that break a rule of the format (magic, counts, sections)."""

    code = 87
    name = "INVALID_RECORD"


class UnknownTopicOrPartitionError(LogstreamError):
    """No such topic or partition. Retriable: it may be created meanwhile."""

    code = 3
    name = "UNKNOWN_TOPIC_OR_PARTITION"
    retriable = True


class RequestTimedOutError(LogstreamError):
    code = 7
    name = "REQUEST_TIMED_OUT"
    retriable = True


class BufferExhaustedError(RequestTimedOutError):
    """``Producer.send`` waited ``max_block_ms`` for room in its bounded buffer (the broker
    is slower than the application, or unreachable). Differs from its parent in that nothing
    was sent: the record never left the application. Retriable once the backlog drains."""

    code = 1002
    name = "BUFFER_EXHAUSTED"
    retriable = True


class RequestTimeoutError(RequestTimedOutError):
    """``Requester.request`` got no reply within its ``timeout``: no responder took the
    request, the responder was slow or failed, or the reply was lost with a broker restart.
    Differs from its parent in that the request itself was sent and may still be processed
    (a reply arriving later is discarded): retry only requests that are safe to repeat."""

    code = 1201
    name = "REPLY_TIMED_OUT"
    retriable = True


class BrokerNotAvailableError(LogstreamError):
    """The broker cannot be reached (connection refused, unavailable)."""

    code = 8
    name = "BROKER_NOT_AVAILABLE"
    retriable = True


class MessageTooLargeError(LogstreamError):
    """A batch is bigger than the topic's ``max_batch_bytes``."""

    code = 10
    name = "MESSAGE_TOO_LARGE"


class InvalidTopicError(LogstreamError):
    """A topic name breaks the naming rules."""

    code = 17
    name = "INVALID_TOPIC_EXCEPTION"


class RecordListTooLargeError(LogstreamError):
    code = 18
    name = "RECORD_LIST_TOO_LARGE"


class InvalidRequiredAcksError(LogstreamError):
    code = 21
    name = "INVALID_REQUIRED_ACKS"


class IllegalGenerationError(LogstreamError):
    """A request carries a generation (member epoch) older than the group's."""

    code = 22
    name = "ILLEGAL_GENERATION"


class CommitFailedError(IllegalGenerationError):
    """Raised by the consumer (never sent by the broker) when a group commit is refused
    because this member no longer owns the partitions: it was fenced after its session
    timeout, or the commit carried an outdated member epoch. Differs from its parent in that
    the client already retried with its current epoch. The records since the last commit
    will be delivered again to the new owner: make processing idempotent."""

    code = 1003
    name = "COMMIT_FAILED"


class UnknownMemberIdError(LogstreamError):
    code = 25
    name = "UNKNOWN_MEMBER_ID"


class InconsistentGroupProtocolError(LogstreamError):
    """A Kafka client joining a classic group offers no protocol (assignor) that every other
    member supports, or a protocol type other than the group's."""

    code = 23
    name = "INCONSISTENT_GROUP_PROTOCOL"


class InvalidSessionTimeoutError(LogstreamError):
    code = 26
    name = "INVALID_SESSION_TIMEOUT"


class RebalanceInProgressError(LogstreamError):
    code = 27
    name = "REBALANCE_IN_PROGRESS"
    retriable = True


class InvalidCommitOffsetSizeError(LogstreamError):
    code = 28
    name = "INVALID_COMMIT_OFFSET_SIZE"


class InvalidTimestampError(LogstreamError):
    code = 32
    name = "INVALID_TIMESTAMP"


class TopicAlreadyExistsError(LogstreamError):
    code = 36
    name = "TOPIC_ALREADY_EXISTS"


class InvalidPartitionsError(LogstreamError):
    code = 37
    name = "INVALID_PARTITIONS"


class InvalidConfigError(LogstreamError):
    code = 40
    name = "INVALID_CONFIG"


class InvalidRequestError(LogstreamError):
    code = 42
    name = "INVALID_REQUEST"


class InvalidProducerNameError(InvalidRequestError):
    """``InitProducerId`` with a producer name longer than the broker keeps (255 UTF-8
    bytes). Differs from its parent in naming the one field at fault: the broker stores
    every name it hands an id to, so the limit bounds that state."""

    code = 1005
    name = "INVALID_PRODUCER_NAME"


class InternalTopicReadOnlyError(LogstreamError):
    """A client asked to create, delete, produce to, alter or grow an internal topic (a
    name starting with ``__``, such as ``__consumer_offsets``). Only the broker writes those;
    clients may fetch and describe them. Differs from :class:`InvalidTopicError` (the name
    breaks the naming rules: no topic could ever have it) and from an authorization failure
    (who asks does not matter: no client may do this). Not retriable."""

    code = 1004
    name = "INTERNAL_TOPIC_READ_ONLY"


class OutOfOrderSequenceError(LogstreamError):
    """Idempotent produce: the batch's sequence leaves a gap after the last one written."""

    code = 45
    name = "OUT_OF_ORDER_SEQUENCE_NUMBER"


class DuplicateSequenceError(LogstreamError):
    """Idempotent produce: this batch was already written (the broker answers its offsets)."""

    code = 46
    name = "DUPLICATE_SEQUENCE_NUMBER"


class InvalidProducerEpochError(LogstreamError):
    """A newer incarnation of this producer id exists; this one is fenced."""

    code = 47
    name = "INVALID_PRODUCER_EPOCH"


class KafkaStorageError(LogstreamError):
    """The broker's disk failed (write, flush, fsync, full disk)."""

    code = 56
    name = "KAFKA_STORAGE_ERROR"


class NonEmptyGroupError(LogstreamError):
    code = 68
    name = "NON_EMPTY_GROUP"


class GroupIdNotFoundError(LogstreamError):
    code = 69
    name = "GROUP_ID_NOT_FOUND"


class GroupMaxSizeReachedError(LogstreamError):
    """A join would take the group past the broker's ``group_max_size`` members."""

    code = 81
    name = "GROUP_MAX_SIZE_REACHED"


class ThrottlingQuotaExceededError(LogstreamError):
    """The broker holds as many request bytes as its cap allows; retry after a backoff."""

    code = 89
    name = "THROTTLING_QUOTA_EXCEEDED"
    retriable = True


class ConnectionLimitExceededError(LogstreamError):
    """The client's address already has as many connections with calls open, or as many
    streams open, as the broker allows (``max_connections_per_address``,
    ``max_streams_per_address``); close some or retry later. Unlike
    THROTTLING_QUOTA_EXCEEDED it is about how many calls, not how many bytes."""

    code = 1006
    name = "CONNECTION_LIMIT_EXCEEDED"
    retriable = True


class TopicAuthorizationFailedError(LogstreamError):
    """The principal may not do this to this topic, or the topic does not exist: the two are
    answered alike so that an unauthorised client learns nothing about what exists."""

    code = 29
    name = "TOPIC_AUTHORIZATION_FAILED"


class GroupAuthorizationFailedError(LogstreamError):
    code = 30
    name = "GROUP_AUTHORIZATION_FAILED"


class ClusterAuthorizationFailedError(LogstreamError):
    code = 31
    name = "CLUSTER_AUTHORIZATION_FAILED"


class AuthenticationFailedError(LogstreamError):
    """No valid credentials: a missing, unknown or wrong token, or no client certificate
    where one is required. The message never repeats the secret that was sent."""

    code = 58
    name = "SASL_AUTHENTICATION_FAILED"


class ClientClosedError(LogstreamError):
    """The client object was closed by its owner; create a new one."""

    code = 1001
    name = "CLIENT_CLOSED"


class InvalidQueueDelayError(InvalidRequestError):
    """A queue-group request carried a negative nack delay or a lease of zero or less.
    Differs from its parent in naming the one field at fault: the rest of the request was
    well formed, and nothing in it was applied."""

    code = 1104
    name = "INVALID_QUEUE_DELAY"


class InvalidScheduleError(InvalidRequestError, ValueError):
    """A record's delivery time or time-to-live is out of range: a delay below zero or over
    seven days, a TTL of zero or less, or both ``delay_ms`` and ``deliver_at_ms`` given.
    Raised by the producer before anything is sent; also a ``ValueError``. The broker never
    refuses a stored record over its schedule headers: a value it cannot read is ignored and
    counted under this name (docs/queues.md, Delayed delivery)."""

    code = 1110
    name = "INVALID_SCHEDULE"


class QueueRecordNotHeldError(LogstreamError):
    """An ack, nack, reject or extend named a record that is in the queue group's window
    but is not held by the caller: another member acquired it after the caller's lease ran
    out (or after the caller was released), or it is available or waiting for redelivery.
    Differs from :class:`QueueRecordFinishedError` in that the record is still unfinished:
    someone else may be working on it, so the caller's result was not recorded."""

    code = 1101
    name = "QUEUE_RECORD_NOT_HELD"


class QueueRecordFinishedError(LogstreamError):
    """An ack, nack, reject or extend named a record whose outcome is already decided:
    acknowledged (by anyone), dead-lettered, dropped on expiry, or below the group's start
    offset. Differs from :class:`QueueRecordNotHeldError` in that nobody will receive the
    record again: a repeated ack lands here and is harmless."""

    code = 1102
    name = "QUEUE_RECORD_FINISHED"


class QueueOffsetNotInWindowError(LogstreamError):
    """An ack, nack, reject or extend named an offset at or beyond the end of the queue
    group's window (or a negative one): the group never read that record, so no member can
    hold it. Differs from its two siblings in that the offset is unknown, not merely held
    elsewhere or finished: usually a client bug (wrong partition or offset)."""

    code = 1103
    name = "QUEUE_OFFSET_NOT_IN_WINDOW"


class GroupKindMismatchError(LogstreamError):
    """A group id that names a consumer group was used as a queue group, or the other way
    round. Differs from :class:`GroupIdNotFoundError` in that the group exists; it is of
    the other kind, and one id cannot be both."""

    code = 1105
    name = "GROUP_KIND_MISMATCH"


def _all_error_classes() -> list[type[LogstreamError]]:
    seen: list[type[LogstreamError]] = []
    stack: list[type[LogstreamError]] = [LogstreamError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


_BY_CODE: dict[int, type[LogstreamError]] = {}
_BY_NAME: dict[str, type[LogstreamError]] = {}
for _cls in _all_error_classes():
    if _cls is LogstreamError:
        continue
    _BY_CODE[_cls.code] = _cls
    _BY_NAME[_cls.name] = _cls


def for_code(code: int) -> type[LogstreamError]:
    """The error class for a numeric code; ``UnknownServerError`` for unknown codes."""
    return _BY_CODE.get(code, UnknownServerError)


def for_name(name: str) -> type[LogstreamError]:
    """The error class for a Kafka-style name; ``UnknownServerError`` for unknown names."""
    return _BY_NAME.get(name, UnknownServerError)


NONE_CODE = 0
"""The error code that means success in responses."""
