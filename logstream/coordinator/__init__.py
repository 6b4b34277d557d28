"""Consumer groups: membership, epochs, server-side assignment, committed offsets.

A layer between the broker and storage: imports storage, codec, errors, types and clock,
never grpc, protocol, broker, client or cli (``tools/check_layers.py``).

- :mod:`~logstream.coordinator.assignors`: range, round-robin, sticky (pure functions)
- :mod:`~logstream.coordinator.group`: one group's state machine and reconciliation
- :mod:`~logstream.coordinator.offsets`: the committed-offsets table in ``__consumer_offsets``
- :mod:`~logstream.coordinator.coordinator`: ``GroupCoordinator``, one method per group RPC
"""

from logstream.coordinator.assignors import ASSIGNORS, DEFAULT_ASSIGNOR, get_assignor
from logstream.coordinator.coordinator import CoordinatorConfig, GroupCoordinator
from logstream.coordinator.descriptions import (
    ExpiryReport,
    GroupDescription,
    GroupSummary,
    MemberDescription,
    PartitionLag,
    ResetSpec,
)
from logstream.coordinator.group import Group, GroupSettings, HeartbeatResult
from logstream.coordinator.offsets import OFFSETS_TOPIC, CommittedOffset, OffsetStore

__all__ = [
    "ASSIGNORS",
    "DEFAULT_ASSIGNOR",
    "OFFSETS_TOPIC",
    "CommittedOffset",
    "CoordinatorConfig",
    "ExpiryReport",
    "Group",
    "GroupCoordinator",
    "GroupDescription",
    "GroupSettings",
    "GroupSummary",
    "HeartbeatResult",
    "MemberDescription",
    "OffsetStore",
    "PartitionLag",
    "ResetSpec",
    "get_assignor",
]
