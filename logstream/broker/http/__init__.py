"""Operability: the HTTP listener (``/metrics``, ``/healthz``, ``/readyz``), the counters the
hot paths keep for it, and structured logs. See docs/monitoring.md."""

from logstream.broker.http.logs import configure_logging, event
from logstream.broker.http.metrics import BrokerMetrics, NullMetrics, metrics_for

__all__ = ["BrokerMetrics", "NullMetrics", "configure_logging", "event", "metrics_for"]
