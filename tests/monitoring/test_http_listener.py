"""The HTTP listener in-process: readiness before recovery ends, the queue-group hook,
slow-request events, and the zero-cost path when the listener is off."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from monitoring_helpers import http_get, parse

from logstream.broker.http import BrokerMetrics, NullMetrics
from logstream.broker.http.rpc_metrics import ASYNC_UNARY, observe_handler
from logstream.broker.http.server import HttpListener
from logstream.testing.broker import run_broker


def test_readyz_is_503_until_the_broker_is_attached_and_ready() -> None:
    listener = HttpListener("127.0.0.1:0", BrokerMetrics(100, 1.0))
    try:
        base = f"http://{listener.address}"
        assert http_get(f"{base}/healthz")[0] == 200
        assert http_get(f"{base}/readyz") == (503, "not ready\n")
        scrape = parse(http_get(f"{base}/metrics")[1])
        assert scrape.value("logstream_starting") == 1.0
        assert "logstream_ready" not in scrape.families  # no broker attached yet
        listener.set_ready(True)
        assert http_get(f"{base}/readyz") == (200, "ready\n")
    finally:
        listener.stop()


def test_readyz_goes_503_when_shutdown_begins(tmp_path: Path) -> None:
    with run_broker(tmp_path, http_listen="127.0.0.1:0") as b:
        http = b.server.http
        base = f"http://{http.address}"
        assert http_get(f"{base}/readyz")[0] == 200
        http.set_ready(False)  # what stop() does first
        assert http_get(f"{base}/readyz")[0] == 503


@dataclass
class _Depth:
    available: int
    unread: int
    acquired: int
    delayed: int
    dead_lettered: int
    redelivered: int
    oldest_unfinished_age_ms: int | None
    lost_to_retention: int
    expired: int = 0
    next_due_ms: int | None = None

    @property
    def depth(self) -> int:
        return self.available + self.unread + self.delayed + self.acquired


@dataclass
class _Queue:
    group: str
    total: _Depth


def test_queue_groups_registered_by_the_engine_are_exported(tmp_path: Path) -> None:
    due = int(time.time() * 1000) + 60_000
    depth = _Depth(5, 2, 3, 1, 4, 6, 2500, 8, expired=7, next_due_ms=due)
    with run_broker(tmp_path, http_listen="127.0.0.1:0") as b:
        b.broker.metrics.register_queue_source(lambda: [_Queue("jobs", depth)])
        scrape = parse(http_get(f"http://{b.server.http.address}/metrics")[1])
    assert scrape.value("logstream_queue_depth", group="jobs") == 11
    assert scrape.value("logstream_queue_available", group="jobs") == 7
    assert scrape.value("logstream_queue_in_flight", group="jobs") == 3
    assert scrape.value("logstream_queue_delayed", group="jobs") == 1
    assert scrape.value("logstream_queue_dead_lettered_total", group="jobs") == 4
    assert scrape.value("logstream_queue_redelivered_total", group="jobs") == 6
    assert scrape.value("logstream_queue_oldest_unfinished_age_seconds", group="jobs") == 2.5
    assert scrape.value("logstream_queue_lost_to_retention_total", group="jobs") == 8
    assert scrape.value("logstream_queue_expired_total", group="jobs") == 7
    assert 55 < scrape.value("logstream_queue_next_due_seconds", group="jobs") <= 60


def test_slow_unary_calls_log_a_slow_request_event(caplog: pytest.LogCaptureFixture) -> None:
    metrics = BrokerMetrics(100, slow_request_s=0.01)

    async def slow(request: object, context: object) -> str:
        await asyncio.sleep(0.02)
        return "done"

    async def quick(request: object, context: object) -> str:
        return "done"

    slow_handler = observe_handler(metrics, "Admin.ListTopics", ASYNC_UNARY, slow)
    quick_handler = observe_handler(metrics, "Admin.DescribeTopics", ASYNC_UNARY, quick)
    with caplog.at_level(logging.WARNING, logger="logstream.broker.rpc"):
        assert asyncio.run(quick_handler(None, None)) == "done"
        assert asyncio.run(slow_handler(None, None)) == "done"
    slow_records = [r for r in caplog.records if getattr(r, "event", "") == "slow_request"]
    assert len(slow_records) == 1
    fields = slow_records[0].fields  # type: ignore[attr-defined]
    assert fields["method"] == "Admin.ListTopics" and fields["duration_ms"] >= 20
    hist = metrics.latency.labels("Admin.ListTopics")
    assert hist._sum.get() >= 0.02  # observed once, with its duration


def test_no_listener_means_null_metrics(tmp_path: Path) -> None:
    with run_broker(tmp_path) as b:
        assert isinstance(b.broker.metrics, NullMetrics)
        assert not b.broker.metrics.enabled
        assert b.server.http is None


def test_the_port_is_refused_when_taken(tmp_path: Path) -> None:
    listener = HttpListener("127.0.0.1:0", BrokerMetrics(100, 1.0))
    try:
        from logstream.broker import BrokerConfig, create_server

        config = BrokerConfig(data_dir=tmp_path, listen="127.0.0.1:0", http_listen=listener.address)
        started = time.monotonic()
        with pytest.raises(OSError, match="cannot listen for HTTP"):
            create_server(config)
        assert time.monotonic() - started < 10
    finally:
        listener.stop()


def test_the_console_api_wants_a_login_under_authentication(tmp_path: Path) -> None:
    with run_broker(tmp_path, http_listen="127.0.0.1:0", auth=True) as b:
        base = f"http://{b.server.http.address}"
        status, body = http_get(f"{base}/api/overview")
        assert status == 403 and "requires authentication" in body
        assert http_get(f"{base}/metrics")[0] == 200
