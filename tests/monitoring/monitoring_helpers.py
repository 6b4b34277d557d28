"""Helpers for monitoring tests: a broker process with its HTTP listener, and a scraper.

:func:`start_monitored` starts ``python -m logstream serve`` with ``http_listen =
"127.0.0.1:0"`` and finds the HTTP port in the line it prints before the start line.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from logstream.testing.broker import BrokerProcess

HTTP_LINE = re.compile(r"logstream http listening on (\S+):(\d+)")


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@dataclass
class Scrape:
    """One parsed /metrics answer: ``families`` by name, ``samples`` by (name, labels)."""

    families: dict[str, Any]
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def get(self, name: str, default: float = 0.0, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), default)

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for (n, labels) in self.samples if n == name]


def parse(text: str) -> Scrape:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, frozenset(s.labels.items())): s.value for f in families.values() for s in f.samples
    }
    return Scrape(families, samples)


@dataclass
class Monitored:
    proc: BrokerProcess
    http: str  # "127.0.0.1:PORT"

    @property
    def address(self) -> str:
        return self.proc.address

    def scrape(self) -> Scrape:
        status, body = http_get(f"http://{self.http}/metrics")
        assert status == 200, body
        return parse(body)


def start_monitored(data_dir: Path, **config: Any) -> Monitored:
    config.setdefault("http_listen", "127.0.0.1:0")
    proc = BrokerProcess(data_dir, **config).start()
    match = HTTP_LINE.search(proc.output())
    if match is None:
        proc.terminate()
        raise AssertionError(f"no http line in:\n{proc.output()}")
    return Monitored(proc, f"{match.group(1)}:{match.group(2)}")
