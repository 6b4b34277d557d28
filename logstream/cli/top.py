"""``logstream top``: a live view of topics, consumer groups and queue groups.

It reads the broker's ``/metrics`` (``serve --http-listen``), never the broker's internals:
rates are the change of the broker's counters between two scrapes divided by the time
between them. Each table is sorted by what grows fastest: topics by records produced per
second, consumer groups by how fast their lag grows, queue groups by how fast their depth
grows.

On a terminal: a ``rich`` Live view redrawn every ``--interval`` seconds; ``q`` (or
Ctrl-C) quits. Piped: one plain snapshot (two scrapes ``--interval`` apart, so the rates
are real), aligned columns, no colour, then exit.
"""

from __future__ import annotations

import contextlib
import select
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import click

from logstream.cli.lazy_group import fail
from logstream.cli.output import human_bytes, human_count, render_table

DEFAULT_HTTP = "127.0.0.1:7071"

TOPIC_COLUMNS = ["topic", "partitions", "in/s", "in_bytes/s", "out/s", "size"]
GROUP_COLUMNS = ["group", "members", "lag", "lag_growth/s", "time_lag"]
QUEUE_COLUMNS = ["queue_group", "depth", "growth/s", "in_flight", "dead_lettered", "oldest"]


@dataclass
class Snapshot:
    """The figures of one scrape, by metric family then label value."""

    at: float
    values: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, at: float) -> Snapshot:
        from prometheus_client.parser import text_string_to_metric_families

        snap = cls(at)
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if "partition" in s.labels:
                    continue  # per-topic and per-group totals only
                key = s.labels.get("topic", s.labels.get("group"))
                if key is None:
                    continue
                snap.values.setdefault(s.name, {})[key] = s.value
        return snap

    def get(self, name: str) -> Mapping[str, float]:
        return self.values.get(name, {})


def _rate(cur: Snapshot, prev: Snapshot | None, name: str, key: str) -> float:
    if prev is None or cur.at <= prev.at:
        return 0.0
    now, before = cur.get(name).get(key), prev.get(name).get(key)
    if now is None or before is None or now < before:  # new series, or a counter reset
        return 0.0
    return (now - before) / (cur.at - prev.at)


def _growth(cur: Snapshot, prev: Snapshot | None, name: str, key: str) -> float:
    """Change per second of a gauge (lag, depth) since ``prev``; it may fall, unlike a rate."""
    if prev is None or cur.at <= prev.at or key not in prev.get(name):
        return 0.0
    return (cur.get(name)[key] - prev.get(name)[key]) / (cur.at - prev.at)


def _age(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def topic_rows(cur: Snapshot, prev: Snapshot | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for topic, parts in cur.get("logstream_topic_partitions").items():
        if topic.startswith("__"):
            continue
        rows.append(
            {
                "topic": topic,
                "partitions": int(parts),
                "in/s": _rate(cur, prev, "logstream_topic_records_in_total", topic),
                "in_bytes/s": _rate(cur, prev, "logstream_topic_bytes_in_total", topic),
                "out/s": _rate(cur, prev, "logstream_topic_records_out_total", topic),
                "size": cur.get("logstream_topic_log_bytes").get(topic, 0.0),
            }
        )
    rows.sort(key=lambda r: (-r["in/s"], -r["out/s"], r["topic"]))
    return rows


def group_rows(cur: Snapshot, prev: Snapshot | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    lag_name = "logstream_group_total_lag_records"
    for group, lag in cur.get(lag_name).items():
        growth = _growth(cur, prev, lag_name, group)
        rows.append(
            {
                "group": group,
                "members": int(cur.get("logstream_group_members").get(group, 0)),
                "lag": lag,
                "lag_growth/s": growth,
                "time_lag": cur.get("logstream_group_max_lag_seconds").get(group, 0.0),
            }
        )
    rows.sort(key=lambda r: (-r["lag_growth/s"], -r["lag"], r["group"]))
    return rows


def queue_rows(cur: Snapshot, prev: Snapshot | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    depth_name = "logstream_queue_depth"
    for group, depth in cur.get(depth_name).items():
        growth = _growth(cur, prev, depth_name, group)
        rows.append(
            {
                "queue_group": group,
                "depth": depth,
                "growth/s": growth,
                "in_flight": cur.get("logstream_queue_in_flight").get(group, 0.0),
                "dead_lettered": cur.get("logstream_queue_dead_lettered_total").get(group, 0.0),
                "oldest": cur.get("logstream_queue_oldest_unfinished_age_seconds").get(group, 0.0),
            }
        )
    rows.sort(key=lambda r: (-r["growth/s"], -r["depth"], r["queue_group"]))
    return rows


def _display(row: Mapping[str, Any]) -> dict[str, Any]:
    """Human units for the figures (kept numeric where a column is a count)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("size",):
            out[key] = human_bytes(value)
        elif key == "in_bytes/s":
            out[key] = human_bytes(value) + "/s"
        elif key in ("time_lag", "oldest"):
            out[key] = _age(value)
        elif key.endswith("/s"):
            out[key] = f"{value:,.1f}"
        elif isinstance(value, float):
            out[key] = human_count(value)
        else:
            out[key] = value
    return out


def render_plain(cur: Snapshot, prev: Snapshot | None) -> str:
    parts = []
    for title, rows, columns in _tables(cur, prev):
        parts.append(f"{title}\n")
        if rows:
            parts.append(render_table([_display(r) for r in rows], columns))
        else:
            parts.append("(none)\n")
        parts.append("\n")
    return "".join(parts).rstrip("\n") + "\n"


def _tables(cur: Snapshot, prev: Snapshot | None) -> list[tuple[str, list[Any], list[str]]]:
    return [
        ("TOPICS", topic_rows(cur, prev), TOPIC_COLUMNS),
        ("CONSUMER GROUPS", group_rows(cur, prev), GROUP_COLUMNS),
        ("QUEUE GROUPS", queue_rows(cur, prev), QUEUE_COLUMNS),
    ]


def render_rich(cur: Snapshot, prev: Snapshot | None, source: str) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    stamp = time.strftime("%H:%M:%S", time.localtime(cur.at))
    items: list[Any] = [Text(f"logstream top  {source}  {stamp}  (q quits)", style="bold")]
    for title, rows, columns in _tables(cur, prev):
        table = Table(title=title, title_justify="left", expand=True)
        for c in columns:
            table.add_column(c.upper(), justify="left" if c in columns[:1] else "right")
        for row in rows:
            shown = _display(row)
            table.add_row(*(str(shown[c]) for c in columns))
        items.append(table)
    return Group(*items)


def scrape(url: str, timeout: float) -> Snapshot:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise fail(f"cannot read {url}: {reason} (is the broker serving --http-listen?)") from exc
    return Snapshot.parse(text, time.monotonic())


@contextlib.contextmanager
def _keys() -> Iterator[Any]:
    """stdin in cbreak mode (single keys, no echo) while the view runs."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield sys.stdin
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _wait_for_quit(stdin: Any, seconds: float) -> bool:
    """Wait up to ``seconds``; True when ``q`` was pressed."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([stdin], [], [], left)
        if ready and stdin.read(1) in ("q", "Q"):
            return True
    return False


def run_live(url: str, interval: float, timeout: float) -> None:
    from rich.console import Console
    from rich.live import Live

    prev: Snapshot | None = None
    cur = scrape(url, timeout)
    console = Console()
    with _keys() as stdin, Live(console=console, auto_refresh=False, screen=True) as live:
        while True:
            live.update(render_rich(cur, prev, url), refresh=True)
            if _wait_for_quit(stdin, interval):
                return
            prev, cur = cur, scrape(url, timeout)


@click.command(
    epilog="""\b
Examples:
  logstream top                               # the broker's /metrics on 127.0.0.1:7071
  logstream top --http 10.0.0.5:7071 -n 2     # another broker, refresh every 2 s
  logstream top | head                        # piped: one plain snapshot
"""
)
@click.option(
    "--http",
    "http_address",
    envvar="LOGSTREAM_HTTP",
    default=DEFAULT_HTTP,
    metavar="HOST:PORT",
    help="The broker's HTTP listener (serve --http-listen).",
)
@click.option(
    "--interval",
    "-n",
    type=click.FloatRange(min=0.1, max=3600),
    default=1.0,
    help="Seconds between refreshes (piped: between the two scrapes of the snapshot).",
)
@click.option("--once", is_flag=True, help="Print one plain snapshot even on a terminal.")
def top(http_address: str, interval: float, once: bool) -> None:
    """Live view of topics (produce/fetch rates), consumer groups (lag, time lag) and queue
    groups (depth, dead letters), fastest-growing first; q quits."""
    url = f"http://{http_address}/metrics"
    timeout = max(5.0, interval)
    if once or not (sys.stdout.isatty() and sys.stdin.isatty()):
        first = scrape(url, timeout)
        time.sleep(interval)  # a rate needs two scrapes
        click.echo(render_plain(scrape(url, timeout), first), nl=False)
        return
    with contextlib.suppress(KeyboardInterrupt):
        run_live(url, interval, timeout)
