"""Gauges and counters built at scrape time from the broker's own state.

:class:`BrokerCollector` is a ``prometheus_client`` custom collector: nothing here runs
between scrapes. It reads what the admin and group servicers read (the log manager's
partitions, the group coordinator's descriptions, the queue engine's describe()) and the
traffic accumulators of :class:`~logstream.broker.http.metrics.BrokerMetrics`; it never
opens a storage file.

Cardinality: per-topic and per-group series are always exported; per-partition series
(``logstream_partition_*``) cover at most ``partition_series_limit`` partitions (the first
ones in (topic, partition) order), per-group-partition lag series at most as many pairs.
What is left out is counted in ``logstream_metrics_series_omitted{family=...}`` and is still
inside the per-topic and per-group totals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from logstream.broker.http.metrics import BrokerMetrics
from logstream.broker.request_gate import AdmissionGate

log = logging.getLogger("logstream.broker.http")

TCP_ESTABLISHED = "01"


def established_connections(port: int) -> int:
    """TCP connections established to local ``port`` (Linux ``/proc/net/tcp*``; else 0)."""
    count = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    fields = line.split(None, 4)
                    if (
                        len(fields) > 3
                        and fields[3] == TCP_ESTABLISHED
                        and int(fields[1].rsplit(":", 1)[1], 16) == port
                    ):
                        count += 1
        except OSError:
            continue
    return count


class BrokerCollector(Collector):
    def __init__(
        self,
        broker: Any,
        metrics: BrokerMetrics,
        *,
        port: Callable[[], int],
        request_bytes: Callable[[], int],
        ready: Callable[[], bool],
        throttle_seconds: Callable[[], tuple[float, float]] = lambda: (0.0, 0.0),
        request_gate: AdmissionGate | None = None,
    ) -> None:
        self.broker = broker
        self.request_gate = request_gate
        self.metrics = metrics
        self.port = port
        self.request_bytes = request_bytes
        self.ready = ready
        self.throttle_seconds = throttle_seconds

    def collect(self) -> Iterator[Any]:
        limit = self.metrics.partition_series_limit
        omitted = GaugeMetricFamily(
            "logstream_metrics_series_omitted",
            "Partitions (or group-partition pairs) left out of per-partition series by "
            "metrics_partition_series_limit; still counted in the per-topic/group totals.",
            labels=["family"],
        )
        yield GaugeMetricFamily(
            "logstream_ready", "1 once recovery finished and the broker serves.",
            value=1.0 if self.ready() else 0.0,
        )  # fmt: skip
        yield from self._server()
        yield from self._gate()
        yield from self._partitions(limit, omitted)
        yield from self._groups(limit, omitted)
        yield from self._queues()
        yield omitted

    def _server(self) -> Iterator[Any]:
        broker = self.broker
        yield GaugeMetricFamily(
            "logstream_connections",
            "TCP connections established to the broker's gRPC port.",
            value=established_connections(self.port()),
        )
        # threading.Semaphore keeps its free count in _value and offers no public reader.
        free = getattr(broker.waiter_slots, "_value", broker.config.max_waiters)
        yield GaugeMetricFamily(
            "logstream_waiting_requests",
            "Long-polling fetches and open subscriptions holding a waiter slot.",
            value=broker.config.max_waiters - free,
        )
        yield GaugeMetricFamily(
            "logstream_request_bytes_in_flight",
            "Decoded request bytes the broker holds (capped by max_request_bytes_in_flight).",
            value=self.request_bytes(),
        )
        inboxes = broker.inboxes
        yield GaugeMetricFamily(
            "logstream_inboxes_open",
            "Request/reply inboxes with an open stream (one per Requester).",
            value=len(inboxes),
        )
        yield GaugeMetricFamily(
            "logstream_inbox_queued_bytes",
            "Reply bytes held for inbox streams, not yet pushed.",
            value=inboxes.queued_bytes(),
        )
        yield CounterMetricFamily(
            "logstream_inbox_replies_delivered",
            "Reply batches queued for an open inbox stream.",
            value=inboxes.delivered,
        )
        yield CounterMetricFamily(
            "logstream_inbox_replies_discarded",
            "Reply batches dropped: no stream had the inbox open (late), or it was full.",
            value=inboxes.discarded,
        )
        reported, held = self.throttle_seconds()
        yield CounterMetricFamily(
            "logstream_quota_throttle_seconds",
            "Throttle time reported to clients over a quota (docs/security.md, Quotas).",
            value=reported,
        )
        yield CounterMetricFamily(
            "logstream_quota_held_seconds",
            "Time the broker held back requests of principals that had not waited their "
            "throttle (near 0 when clients honour it).",
            value=held,
        )
        yield CounterMetricFamily(
            "logstream_producer_ids_allocated",
            "Producer ids handed out by InitProducerId since the data directory was created.",
            value=broker.producer_ids.allocated,
        )

    def _gate(self) -> Iterator[Any]:
        """The request-byte gate (``broker/request_gate.py``) shared by Produce, ProduceStream,
        queue Fetch and the Kafka listener."""
        gate = self.request_gate
        if gate is None:
            return
        yield GaugeMetricFamily(
            "logstream_request_gate_limit_bytes",
            "Request bytes the broker lets its transports receive at once "
            "(max_request_bytes_in_flight).",
            value=gate.limit,
        )
        yield GaugeMetricFamily(
            "logstream_request_gate_reserved_bytes",
            "Request bytes reserved before reading or held while handled (may pass the "
            "limit by what arrived unreserved).",
            value=gate.in_use,
        )
        yield GaugeMetricFamily(
            "logstream_request_gate_waiters",
            "Requests waiting for room in the gate now.",
            value=gate.waiting,
        )
        yield GaugeMetricFamily(
            "logstream_request_gate_parked",
            "Reservations of idle stream reads, given back as soon as a waiter needs room.",
            value=gate.parked,
        )
        yield CounterMetricFamily(
            "logstream_request_gate_waits",
            "Requests that had to wait for room in the gate.",
            value=gate.waits,
        )
        yield CounterMetricFamily(
            "logstream_request_gate_unreserved_bytes",
            "Request bytes that arrived past their reservation (a message larger than it, or "
            "read after an idle read's reservation was given back); counted on arrival.",
            value=gate.unreserved_bytes,
        )

    def _partitions(self, limit: int, omitted: GaugeMetricFamily) -> Iterator[Any]:
        logs = sorted(self.broker.manager.all_logs(), key=lambda p: (p.topic, p.partition))
        traffic = self.metrics.traffic()
        self.metrics.forget({(p.topic, p.partition) for p in logs})
        t_names = ("records_in", "bytes_in", "records_out", "bytes_out")
        t_help = (
            "Records appended by produce requests.",
            "Batch bytes appended by produce requests.",
            "Records in the batches sent by fetches and subscriptions.",
            "Batch bytes sent by fetches and subscriptions.",
        )
        topic_traffic = [
            CounterMetricFamily(f"logstream_topic_{n}", h, labels=["topic"])
            for n, h in zip(t_names, t_help, strict=True)
        ]
        part_traffic = [
            CounterMetricFamily(f"logstream_partition_{n}", h, labels=["topic", "partition"])
            for n, h in zip(t_names, t_help, strict=True)
        ]
        pl = ["topic", "partition"]
        log_bytes = GaugeMetricFamily(
            "logstream_partition_log_bytes", "Bytes of the partition's segments.", labels=pl
        )
        segments = GaugeMetricFamily(
            "logstream_partition_segments", "Segment files of the partition.", labels=pl
        )
        end = GaugeMetricFamily(
            "logstream_partition_log_end_offset", "Offset the next record gets.", labels=pl
        )
        start = GaugeMetricFamily(
            "logstream_partition_log_start_offset", "Oldest offset still kept.", labels=pl
        )
        t_bytes = GaugeMetricFamily(
            "logstream_topic_log_bytes", "Bytes of the topic's segments.", labels=["topic"]
        )
        t_parts = GaugeMetricFamily(
            "logstream_topic_partitions", "Partitions of the topic.", labels=["topic"]
        )
        t_failed = GaugeMetricFamily(
            "logstream_topic_failed_partitions",
            "Partitions failed by a storage error (they refuse appends).",
            labels=["topic"],
        )
        totals: dict[str, list[int]] = {}
        for i, plog in enumerate(logs):
            topic, partition = plog.topic, plog.partition
            size = plog.size_bytes
            counts = traffic.get((topic, partition), (0, 0, 0, 0))
            total = totals.setdefault(topic, [0, 0, 0, 0, 0, 0, 0])
            for k in range(4):
                total[k] += counts[k]
            total[4] += size
            total[5] += 1
            total[6] += 1 if plog.failed else 0
            if i >= limit:
                continue
            labels = [topic, str(partition)]
            for family, value in zip(part_traffic, counts, strict=True):
                family.add_metric(labels, value)
            log_bytes.add_metric(labels, size)
            segments.add_metric(labels, plog.segment_count)
            end.add_metric(labels, plog.log_end_offset)
            start.add_metric(labels, plog.log_start_offset)
        omitted.add_metric(["partition"], max(0, len(logs) - limit))
        for topic, total in totals.items():
            for k, family in enumerate(topic_traffic):
                family.add_metric([topic], total[k])
            t_bytes.add_metric([topic], total[4])
            t_parts.add_metric([topic], total[5])
            t_failed.add_metric([topic], total[6])
        yield from topic_traffic
        yield from part_traffic
        yield from (log_bytes, segments, end, start, t_bytes, t_parts, t_failed)

    def _groups(self, limit: int, omitted: GaugeMetricFamily) -> Iterator[Any]:
        coordinator = self.broker.coordinator
        members = GaugeMetricFamily(
            "logstream_group_members", "Members of the consumer group.", labels=["group"]
        )
        lag = GaugeMetricFamily(
            "logstream_group_lag_records",
            "Records between the group's committed offset and the log end, per partition.",
            labels=["group", "topic", "partition"],
        )
        time_lag = GaugeMetricFamily(
            "logstream_group_lag_seconds",
            "Age of the record at the group's committed offset (0 when caught up).",
            labels=["group", "topic", "partition"],
        )
        total_lag = GaugeMetricFamily(
            "logstream_group_total_lag_records",
            "Records the group has not committed yet, over all its partitions.",
            labels=["group"],
        )
        max_time_lag = GaugeMetricFamily(
            "logstream_group_max_lag_seconds",
            "The largest time lag over the group's partitions.",
            labels=["group"],
        )
        pairs = 0
        left_out = 0
        if coordinator is not None:
            for summary in coordinator.list_groups():
                try:
                    desc = coordinator.describe_group(summary.group_id)
                except Exception:  # deleted between the list and the describe
                    continue
                group = desc.group_id
                members.add_metric([group], len(desc.members))
                worst_s, records = 0.0, 0
                for p in desc.partitions:
                    seconds = max(p.time_lag_ms, 0) / 1000.0
                    records += p.lag
                    worst_s = max(worst_s, seconds)
                    if pairs < limit:
                        labels = [group, p.topic, str(p.partition)]
                        lag.add_metric(labels, p.lag)
                        time_lag.add_metric(labels, seconds)
                        pairs += 1
                    else:
                        left_out += 1
                total_lag.add_metric([group], records)
                max_time_lag.add_metric([group], worst_s)
        omitted.add_metric(["group_partition"], left_out)
        yield from (members, lag, time_lag, total_lag, max_time_lag)

    def _queues(self) -> Iterator[Any]:
        gauges = {
            "depth": "Records not finished: waiting (available, unread, delayed) or in flight.",
            "available": "Records ready to be handed out now.",
            "in_flight": "Records handed out and not yet acknowledged.",
            "delayed": "Records waiting out a redelivery delay or a scheduled delivery time.",
            "next_due_seconds": "Seconds until the next delayed record is due (0: none).",
            "oldest_unfinished_age_seconds": "Age of the oldest record not finished yet.",
        }
        counters = {
            "dead_lettered": "Records moved to the dead-letter topic.",
            "redelivered": "Records handed out again after a release, timeout or rejection.",
            "expired": "Records that expired before delivery (dead-lettered or dropped).",
            "lost_to_retention": "Records deleted by retention before they were finished.",
        }
        families: dict[str, Any] = {
            n: GaugeMetricFamily(f"logstream_queue_{n}", h, labels=["group"])
            for n, h in gauges.items()
        }
        families.update(
            {
                n: CounterMetricFamily(f"logstream_queue_{n}", h, labels=["group"])
                for n, h in counters.items()
            }
        )
        for source in self.metrics.queue_sources:
            try:
                descriptions = list(source())
            except Exception:
                log.exception("queue metrics source failed")
                continue
            now_ms = int(time.time() * 1000)
            for desc in descriptions:
                t = desc.total
                age_ms = t.oldest_unfinished_age_ms
                values = {
                    "depth": t.depth,
                    "available": t.available + t.unread,
                    "in_flight": t.acquired,
                    "delayed": t.delayed,
                    "oldest_unfinished_age_seconds": (age_ms or 0) / 1000.0,
                    "dead_lettered": t.dead_lettered,
                    "redelivered": t.redelivered,
                    "expired": t.expired,
                    "next_due_seconds": 0.0
                    if t.next_due_ms is None
                    else max(t.next_due_ms - now_ms, 0) / 1000.0,
                    "lost_to_retention": t.lost_to_retention,
                }
                for name, value in values.items():
                    families[name].add_metric([desc.group], value)
        yield from families.values()
