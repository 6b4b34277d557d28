"""Which ACL checks each RPC needs, from its decoded request, and which answers are filtered.

``CHECKS`` maps a method's full path to a function of its request that lists the
(resource type, name, operation) triples the principal must be allowed; one refusal refuses
the call. ``FILTERS`` maps list/describe methods to a function that drops from the answer
what the principal may not describe. A method in neither is refused to everyone but super
users (a new RPC is closed until it gets a rule; ``tests/security`` checks every RPC has one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from logstream.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    LogstreamError,
    TopicAuthorizationFailedError,
)

Check = tuple[str, str, str]
Allowed = Callable[[str, str, str], bool]  # (resource type, name, operation) -> bool

LOG, ADMIN, GROUP, SECURITY, QUEUE = (
    "/logstream.v1.Log/",
    "/logstream.v1.Admin/",
    "/logstream.v1.Group/",
    "/logstream.v1.Security/",
    "/logstream.v1.Queue/",
)


def _topics(names: Any, op: str) -> list[Check]:
    return [("topic", n, op) for n in dict.fromkeys(names)]


def _group(request: Any, op: str) -> list[Check]:
    return [("group", request.group_id, op)]


def _queue(request: Any, op: str) -> list[Check]:
    # queue groups share the group namespace (one id is one kind, docs/queues.md); a
    # member's fetch reads the topics the group was created with (checked at creation)
    return [("group", request.group, op)]


CHECKS: dict[str, Callable[[Any], list[Check]]] = {
    LOG + "Produce": lambda r: _topics((p.topic for p in r.partitions), "write"),
    LOG + "ProduceStream": lambda r: _topics((p.topic for p in r.partitions), "write"),
    LOG + "Fetch": lambda r: _topics((p.topic for p in r.partitions), "read"),
    LOG + "Subscribe": lambda r: _topics((p.topic for p in r.partitions), "read"),
    LOG + "ListOffsets": lambda r: _topics((p.topic for p in r.partitions), "describe"),
    LOG + "InitProducerId": lambda r: [],  # an id grants nothing; writes are checked
    ADMIN + "CreateTopics": lambda r: _topics((t.name for t in r.topics), "create"),
    ADMIN + "DeleteTopics": lambda r: _topics(r.names, "delete"),
    ADMIN + "ListTopics": lambda r: [],
    ADMIN + "DescribeTopics": lambda r: _topics(r.names, "describe"),
    ADMIN + "AlterTopicConfig": lambda r: _topics([r.name], "alter"),
    ADMIN + "CreatePartitions": lambda r: _topics([r.name], "alter"),
    GROUP + "Heartbeat": lambda r: _group(r, "read"),
    GROUP + "CommitOffsets": lambda r: (
        _group(r, "read") + _topics((o.topic for o in r.offsets), "read")
    ),
    GROUP + "FetchOffsets": lambda r: (
        _group(r, "describe") + _topics((p.topic for p in r.partitions), "describe")
    ),
    GROUP + "ListGroups": lambda r: [],
    GROUP + "DescribeGroup": lambda r: _group(r, "describe"),
    GROUP + "DeleteGroup": lambda r: _group(r, "delete"),
    GROUP + "ResetOffsets": lambda r: _group(r, "read") + _topics([r.topic], "read"),
    QUEUE + "Join": lambda r: _queue(r, "read") + (_topics(r.topics, "read") if r.create else []),
    QUEUE + "Leave": lambda r: _queue(r, "read"),
    QUEUE + "Fetch": lambda r: _queue(r, "read") + _topics((x.inbox for x in r.replies), "write"),
    QUEUE + "Session": lambda r: (  # each message of the stream
        _queue(r, "read") + _topics((x.inbox for x in r.replies), "write")
    ),
    QUEUE + "Settle": lambda r: _queue(r, "read"),
    QUEUE + "Peek": lambda r: _queue(r, "read"),
    QUEUE + "CreateQueueGroup": lambda r: _queue(r, "create") + _topics(r.topics, "read"),
    QUEUE + "AlterQueueGroup": lambda r: _queue(r, "alter"),
    QUEUE + "DescribeQueueGroup": lambda r: _queue(r, "describe"),
    QUEUE + "ListQueueGroups": lambda r: [],
    QUEUE + "DeleteQueueGroup": lambda r: _queue(r, "delete"),
    QUEUE + "Redrive": lambda r: (
        _queue(r, "alter") + (_topics([r.to_topic], "write") if r.to_topic else [])
    ),
    SECURITY + "CreateAcls": lambda r: [("cluster", "cluster", "alter")],
    SECURITY + "DeleteAcls": lambda r: [("cluster", "cluster", "alter")],
    SECURITY + "ListAcls": lambda r: [("cluster", "cluster", "describe")],
    SECURITY + "CreateUser": lambda r: [("cluster", "cluster", "alter")],
    SECURITY + "DeleteUser": lambda r: [("cluster", "cluster", "alter")],
    SECURITY + "ListUsers": lambda r: [("cluster", "cluster", "describe")],
    SECURITY + "SetQuota": lambda r: [("cluster", "cluster", "alter")],
    SECURITY + "ListQuotas": lambda r: [("cluster", "cluster", "describe")],
}


def _keep(items: Any, keep: Callable[[Any], bool]) -> None:
    kept = [item for item in items if keep(item)]
    del items[:]
    items.extend(kept)


def _filter_topics(response: Any, allowed: Allowed) -> None:
    _keep(response.topics, lambda t: allowed("topic", t.name, "describe"))


FILTERS: dict[str, Callable[[Any, Allowed], None]] = {
    ADMIN + "ListTopics": _filter_topics,
    ADMIN + "DescribeTopics": _filter_topics,
    GROUP + "ListGroups": lambda r, ok: _keep(
        r.groups, lambda g: ok("group", g.group_id, "describe")
    ),
    GROUP + "FetchOffsets": lambda r, ok: _keep(
        r.offsets, lambda o: ok("topic", o.topic, "describe")
    ),
    GROUP + "DescribeGroup": lambda r, ok: _keep(
        r.partitions, lambda p: ok("topic", p.topic, "describe")
    ),
    QUEUE + "ListQueueGroups": lambda r, ok: _keep(
        r.groups, lambda g: ok("group", g.group, "describe")
    ),
}

OPEN_TO_EVERY_PRINCIPAL = ("/grpc.reflection.",)


def refusal(resource_type: str, name: str, operation: str) -> LogstreamError:
    """The error for a refused check: the same whether the resource exists or not."""
    if resource_type == "topic":
        return TopicAuthorizationFailedError(f"not authorized to {operation} topic {name!r}")
    if resource_type == "group":
        return GroupAuthorizationFailedError(f"not authorized to {operation} group {name!r}")
    return ClusterAuthorizationFailedError(f"not authorized to {operation} the cluster")
