"""docs/monitoring/: the alert rules and the Grafana dashboard only use metrics that a real
broker's /metrics declares (scraped from a process, parsed with the Prometheus parser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from monitoring_helpers import Monitored

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
METRIC = re.compile(r"\b((?:logstream|process)_[a-z0-9_]+)\b")
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}


def _rule_exprs() -> list[str]:
    doc = yaml.safe_load((DOCS / "alerts.yml").read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert len(rules) >= 4
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
    return [rule["expr"] for rule in rules]


def _dashboard_exprs() -> list[str]:
    dash = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert dash["panels"]
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    assert all(exprs)
    return exprs


def _declared(monitored: Monitored) -> set[str]:
    """Every sample name a scrape declares (families with no samples yet included)."""
    names: set[str] = set()
    for name, family in monitored.scrape().families.items():
        names.update(name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def test_alerts_and_dashboard_use_only_real_metrics(monitored: Monitored) -> None:
    declared = _declared(monitored)
    used = {m for expr in _rule_exprs() + _dashboard_exprs() for m in METRIC.findall(expr)}
    assert used, "no metric found in the files"
    missing = sorted(used - declared)
    assert not missing, f"not in /metrics: {missing}"
    # the four alerts are there
    alerts_text = (DOCS / "alerts.yml").read_text()
    for needed in (
        "logstream_queue_depth",
        "logstream_group_max_lag_seconds",
        "logstream_queue_dead_lettered_total",
        "logstream_flush_failures_total",
    ):
        assert needed in alerts_text


def test_a_misspelt_metric_would_be_caught(monitored: Monitored) -> None:
    declared = _declared(monitored)
    assert "logstream_topic_records_in_total" in declared
    assert "logstream_topic_records_in" not in declared  # a counter needs its _total
    assert "logstream_rpc_duration_seconds_bucket" in declared
