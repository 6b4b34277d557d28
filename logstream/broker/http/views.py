"""The console's JSON views, read through the objects the gRPC servicers use.

``AdminHandler`` for topics, the group coordinator, the broker's ``QueueManager`` (queue
groups, their dead letters and redrive) and the partition log's ``read`` as Fetch does;
the console never opens a storage file. Every view takes the request's :class:`Access`
(``access.py``): with ACLs on, what a principal may not describe is left out and what it
may not do is refused with the gRPC call's error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from logstream.broker.admin import AdminHandler
from logstream.broker.http.access import Access
from logstream.broker.http.messages import BadRequest, search, text_or_hex
from logstream.broker.http.metrics import BrokerMetrics
from logstream.broker.security.rules import ADMIN, LOG, QUEUE
from logstream.errors import LogstreamError
from logstream.protocol import admin_pb2, log_pb2, queue_pb2

MAX_DEAD_LETTERS = 200


def _fetch_request(topic: str) -> log_pb2.FetchRequest:
    return log_pb2.FetchRequest(partitions=[log_pb2.FetchPartition(topic=topic)])


class ConsoleApi:
    def __init__(
        self, broker: Any, metrics: BrokerMetrics, port: Callable[[], int] | None = None
    ) -> None:
        self.broker = broker
        self.metrics = metrics
        self.admin = AdminHandler(broker)
        self._port = port  # the bound gRPC port (config.listen may say port 0)

    def _listen(self) -> str:
        listen = str(self.broker.config.listen)
        if self._port is None:
            return listen
        return f"{listen.rpartition(':')[0]}:{self._port()}"

    def overview(self, access: Access) -> dict[str, Any]:
        traffic = self.metrics.traffic()
        topics = []
        for info in self.admin.describe_topics([], config=False):
            if info.error is not None or not access.allowed("topic", info.name, "describe"):
                continue
            totals = [0, 0, 0, 0]
            for p in info.partitions:
                for k, v in enumerate(traffic.get((info.name, p.partition), (0, 0, 0, 0))):
                    totals[k] += v
            topics.append(
                {
                    "name": info.name,
                    "partitions": len(info.partitions),
                    "size_bytes": sum(p.size_bytes for p in info.partitions),
                    "records": sum(p.log_end_offset - p.log_start_offset for p in info.partitions),
                    "records_in": totals[0],
                    "bytes_in": totals[1],
                    "records_out": totals[2],
                    "bytes_out": totals[3],
                }
            )
        config = self.broker.config
        return {
            "broker": {"data_dir": str(config.data_dir), "listen": self._listen()},
            "principal": access.principal,
            "topics": topics,
        }

    def topic(self, access: Access, name: str) -> dict[str, Any]:
        access.require(ADMIN + "DescribeTopics", admin_pb2.DescribeTopicsRequest(names=[name]))
        info = self.admin.describe_topics([name])[0]
        if info.error is not None:
            raise LookupError(f"{info.error.name}: {info.error.message}")
        traffic = self.metrics.traffic()
        return {
            "name": info.name,
            "config": info.config,
            "partitions": [
                {
                    "partition": p.partition,
                    "log_start_offset": p.log_start_offset,
                    "log_end_offset": p.log_end_offset,
                    "size_bytes": p.size_bytes,
                    "segments": p.segment_count,
                    "records_in": traffic.get((name, p.partition), (0, 0, 0, 0))[0],
                    "records_out": traffic.get((name, p.partition), (0, 0, 0, 0))[2],
                    "error": p.error.name if p.error else "",
                }
                for p in info.partitions
            ],
        }

    def messages(self, access: Access, q: dict[str, str], header_args: list[str]) -> dict[str, Any]:
        topic = q.get("topic", "")
        try:
            partition = int(q.get("partition", "0"))
        except ValueError as exc:
            raise BadRequest(f"partition is an integer, got {q.get('partition')!r}") from exc
        access.require(LOG + "Fetch", _fetch_request(topic))
        with self.broker.operation():
            page = search(self.broker.get_log(topic, partition), q, header_args)
        return {"topic": topic, "partition": partition, **page}

    def groups(self, access: Access) -> dict[str, Any]:
        coordinator = self.broker.coordinator
        out = []
        for summary in coordinator.list_groups() if coordinator is not None else ():
            if not access.allowed("group", summary.group_id, "describe"):
                continue
            try:
                desc = coordinator.describe_group(summary.group_id)
            except LogstreamError:
                continue
            partitions = [
                p for p in desc.partitions if access.allowed("topic", p.topic, "describe")
            ]
            out.append(
                {
                    "group": desc.group_id,
                    "state": desc.state,
                    "members": [
                        {
                            "member_id": m.member_id,
                            "client_id": m.client_id,
                            "assignment": [f"{tp.topic}-{tp.partition}" for tp in m.assignment],
                        }
                        for m in desc.members
                    ],
                    "partitions": [
                        {
                            "topic": p.topic,
                            "partition": p.partition,
                            "member_id": p.member_id,
                            "committed": p.committed_offset,
                            "end": p.log_end_offset,
                            "lag": p.lag,
                            "time_lag_ms": max(p.time_lag_ms, 0),
                        }
                        for p in partitions
                    ],
                    "lag": sum(p.lag for p in partitions),
                }
            )
        return {"groups": out}

    # -- queue groups ---------------------------------------------------------------------------

    @staticmethod
    def _depth(t: Any) -> dict[str, Any]:
        return {
            "depth": t.depth,
            "available": t.available + t.unread,
            "in_flight": t.acquired,
            "delayed": t.delayed,
            "dead_lettered": t.dead_lettered,
            "redelivered": t.redelivered,
            "acknowledged": t.acknowledged,
            "oldest_age_ms": t.oldest_unfinished_age_ms or 0,
        }

    def queues(self, access: Access) -> dict[str, Any]:
        manager = self.broker.queues
        out = []
        for desc, topics, members in manager.list_groups() if manager is not None else ():
            if not access.allowed("group", desc.group, "describe"):
                continue
            out.append(
                {
                    "group": desc.group,
                    "topics": topics,
                    "members": members,
                    "dead_letter_topic": desc.dead_letter_topic,
                    **self._depth(desc.total),
                }
            )
        return {"queues": sorted(out, key=lambda q: q["group"])}

    def queue(self, access: Access, name: str) -> dict[str, Any]:
        """One queue group: depth per partition, members, and its newest dead letters."""
        manager = self.broker.queues
        if manager is None:
            raise LookupError("queue groups are not served by this broker")
        access.require(
            QUEUE + "DescribeQueueGroup", queue_pb2.DescribeQueueGroupRequest(group=name)
        )
        desc, client_ids, _invalid = manager.describe(name)
        access.require(LOG + "Fetch", _fetch_request(desc.dead_letter_topic))
        letters, waiting = manager.dead_letters(name, MAX_DEAD_LETTERS)
        return {
            "group": desc.group,
            "dead_letter_topic": desc.dead_letter_topic,
            "total": self._depth(desc.total),
            "partitions": [
                {"topic": p.topic, "partition": p.partition, **self._depth(p)}
                for p in desc.partitions
            ],
            "members": [
                {"member_id": m, "held": held, "client_id": client_ids.get(m, "")}
                for m, held in sorted(desc.members.items())
            ],
            "dead_letters_waiting": waiting,
            "dead_letters": [
                {
                    "offset": d.offset,
                    "timestamp_ms": d.timestamp_ms,
                    "key": text_or_hex(d.key),
                    "value": text_or_hex(d.value),
                    "headers": [[k, text_or_hex(v)] for k, v in d.headers],
                    "reason": d.reason,
                    "reason_text": d.reason_text,
                    "delivery_count": d.delivery_count,
                    "source_topic": d.source_topic,
                    "source_partition": d.source_partition,
                    "source_offset": d.source_offset,
                    "dead_lettered_ms": d.dead_lettered_ms,
                    "redriven": d.redriven,
                }
                for d in letters
            ],
        }

    def redrive(self, access: Access, body: dict[str, Any]) -> dict[str, Any]:
        """``{"group": G, "execute": bool, "reasons": [...]}``: the same redrive as
        ``logstream queue redrive``; a dry run (the default) only counts."""
        name = body.get("group")
        reasons = body.get("reasons") or []
        execute = body.get("execute", False)
        if not isinstance(name, str) or not name:
            raise BadRequest("redrive needs a queue group name")
        if not isinstance(execute, bool) or not isinstance(reasons, list):
            raise BadRequest("execute is true or false and reasons a list of strings")
        manager = self.broker.queues
        if manager is None:
            raise LookupError("queue groups are not served by this broker")
        request = queue_pb2.RedriveRequest(group=name)
        access.require(QUEUE + "Redrive", request)
        items = manager.redrive(name, execute=execute, reasons=[str(r) for r in reasons])
        return {
            "group": name,
            "executed": execute,
            "count": len(items),
            "items": [
                {
                    "dead_letter_offset": i.dead_letter_offset,
                    "source_topic": i.source_topic,
                    "source_partition": i.source_partition,
                    "source_offset": i.source_offset,
                    "reason": i.reason,
                    "target_topic": i.target_topic,
                    "target_partition": i.target_partition,
                }
                for i in items
            ],
        }
