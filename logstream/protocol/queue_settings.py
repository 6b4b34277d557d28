"""The queue-group settings carried by ``QueueGroupSettings`` (protos/logstream/v1/queue.proto),
named once for the broker, which reads them from requests, and the client, which builds them."""

from __future__ import annotations

SETTING_NAMES: tuple[str, ...] = (
    "lease_ms",
    "max_deliveries",
    "backoff_initial_ms",
    "backoff_max_ms",
    "dead_letter_topic",
    "key_ordered",
    "auto_ack",
    "window_size",
    "start",
    "expired_action",
)
