"""What the group coordinator answers with: plain frozen records of groups, members, lag,
offset-reset targets and expiry results. No behaviour beyond validating a reset target."""

from __future__ import annotations

from dataclasses import dataclass

from logstream.errors import InvalidRequestError
from logstream.types import TopicPartition


@dataclass(frozen=True, slots=True)
class GroupSummary:
    group_id: str
    state: str
    members: int


@dataclass(frozen=True, slots=True)
class MemberDescription:
    member_id: str
    instance_id: str
    client_id: str
    member_epoch: int
    assignment: tuple[TopicPartition, ...]
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Where a group stands in one partition.

    ``lag`` = log end - committed (log end - log start when nothing is committed, and
    positions below the log start count from it). ``time_lag_ms`` = now - timestamp of the
    record at the committed position; -1 when the group has consumed everything."""

    topic: str
    partition: int
    member_id: str
    committed_offset: int
    log_end_offset: int
    lag: int
    time_lag_ms: int


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group_id: str
    state: str
    group_epoch: int
    assignor: str
    members: tuple[MemberDescription, ...]
    partitions: tuple[PartitionLag, ...]


RESET_KINDS = ("earliest", "latest", "offset", "timestamp", "shift")


@dataclass(frozen=True, slots=True)
class ResetSpec:
    """Where to move a group's offsets: ``kind`` in RESET_KINDS, with ``value`` the offset,
    the timestamp (ms) or the shift (may be negative)."""

    kind: str
    value: int = 0

    def __post_init__(self) -> None:
        if self.kind not in RESET_KINDS:
            raise InvalidRequestError(f"reset target must be one of {', '.join(RESET_KINDS)}")
        if self.kind == "offset" and self.value < 0:
            raise InvalidRequestError(f"cannot reset to the negative offset {self.value}")


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    fenced_members: dict[str, list[str]]
    expired_groups: list[str]
