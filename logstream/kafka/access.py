"""ACL checks for the Kafka APIs, with the broker's own rules and store (docs/security.md).

The same (resource type, name, operation) triples as the gRPC methods
(``broker/security/rules.py``), answered the Kafka way: a refused topic gets
TOPIC_AUTHORIZATION_FAILED (29) in its own slot of the answer, a refused group
GROUP_AUTHORIZATION_FAILED (30), a refused cluster operation CLUSTER_AUTHORIZATION_FAILED
(31), and the rest of the request goes ahead. Lists (all topics in Metadata, ListGroups)
leave out what the principal may not describe.

  Produce          topic write             OffsetCommit   group read, topic read
  Fetch            topic read              OffsetFetch    group describe, topic describe
  ListOffsets      topic describe          FindCoordinator, DescribeGroups: group describe
  Metadata         topic describe (auto-   JoinGroup, SyncGroup, Heartbeat, LeaveGroup:
                   creation: topic create)                group read
  CreateTopics     topic create            ListGroups     filtered by group describe
  DeleteTopics     topic delete            DescribeConfigs topic describe
  CreatePartitions topic alter             InitProducerId, ApiVersions: none

Without ACLs (no ``--acls``) every check passes. Thread-safe (the store is).
"""

from __future__ import annotations

from logstream.broker.security.acls import AclStore
from logstream.broker.security.rules import refusal
from logstream.errors import LogstreamError


class Access:
    def __init__(self, acls: AclStore | None = None) -> None:
        self.acls = acls

    def refused(
        self, principal: str, resource_type: str, name: str, operation: str
    ) -> LogstreamError | None:
        """The refusal to answer, or None when allowed."""
        if self.acls is None or self.acls.allowed(principal, resource_type, name, operation):
            return None
        return refusal(resource_type, name, operation)

    def allowed(self, principal: str, resource_type: str, name: str, operation: str) -> bool:
        return self.refused(principal, resource_type, name, operation) is None
