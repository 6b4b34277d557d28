"""The print loop ``tail`` and ``consume`` share: open the source, run a
:class:`~logstream.replay.Replay`, format and print what it yields, keep the status line, and
print the summary. The reading itself (ranges, merge, filters, group resume and commit) is the
replay engine's; this module only prints.

The two commands differ only in defaults (see tail.py and consume.py): ``tail`` shows the
last 10 records for people; ``consume`` streams values for scripts.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import click

from logstream.cli import params
from logstream.cli.context import AppContext
from logstream.cli.formatting import (
    Formatter,
    HumanFormatter,
    JsonlFormatter,
    TemplateError,
    TemplateFormatter,
    record_to_json,
)
from logstream.cli.lazy_group import fail
from logstream.cli.options import FilterOptions, PrintOptions
from logstream.cli.output import RecordWriter, StatusLine, human_count
from logstream.replay import timespec as ts
from logstream.replay.filters import RecordFilter
from logstream.replay.member import NoPartitionsAssigned
from logstream.replay.session import Replay, ReplayRequest, ReplayStats
from logstream.replay.source import RecordSource, supports_groups
from logstream.types import Record, TopicPartition


def make_formatter(
    printing: PrintOptions, topics: int, app: AppContext, stream: IO[str]
) -> tuple[Formatter, str]:
    """The formatter and the effective output mode."""
    tz = app.tz if not printing.utc else dt.UTC
    forced = printing.colour if printing.colour is not None else app.colour
    colour = params.use_colour(stream, forced)
    output = printing.output or ("table" if params.is_tty(stream) or forced else "plain")
    if output in ("jsonl", "json"):
        if printing.template:
            raise click.UsageError("--format and --output json/jsonl do not mix")
        return JsonlFormatter(tz=tz or dt.UTC), output
    template = printing.template or printing.default_template
    if template:
        try:
            return TemplateFormatter(template, tz=tz, binary=printing.binary), output
        except TemplateError as exc:
            raise click.BadParameter(str(exc), param_hint="'--format'") from None
    colour = colour and output == "table"
    pretty = printing.pretty if printing.pretty is not None else colour
    human = HumanFormatter(
        colour=colour, show_topic=topics > 1, tz=tz, pretty=pretty, binary=printing.binary
    )
    return human, output


class _JsonArray:
    """Streams records as one JSON array: '[' first, ',' between, ']' at the end."""

    def __init__(self, writer: RecordWriter, tz: dt.tzinfo) -> None:
        self.writer = writer
        self.tz = tz
        self.first = True

    def write(self, record: Record) -> None:
        prefix = "[\n  " if self.first else ",\n  "
        self.first = False
        self.writer.write(prefix + json.dumps(record_to_json(record, self.tz), ensure_ascii=False))

    def close(self) -> None:
        self.writer.stream.write("[]\n" if self.first else "\n]\n")


class _Printer:
    """Records to stdout in the chosen format, and the live status line on stderr."""

    def __init__(self, printing: PrintOptions, request: ReplayRequest, app: AppContext) -> None:
        self.stdout, self.stderr = sys.stdout, sys.stderr
        self.formatter, output = make_formatter(printing, len(request.topics), app, self.stdout)
        enabled = request.follow and params.is_tty(self.stderr)
        self.status = StatusLine(
            self.stderr, enabled=enabled if printing.status is None else printing.status
        )
        self.writer = RecordWriter(self.stdout, self.status)
        self.jarray = _JsonArray(self.writer, app.tz or dt.UTC) if output == "json" else None

    def print(self, record: Record) -> None:
        if self.jarray is not None:
            self.jarray.write(record)
        else:
            self.writer.write(self.formatter(record))

    def close(self) -> None:
        self.status.clear()
        if self.jarray is not None:
            self.jarray.close()
        self.writer.flush()


@dataclass
class _Rate:
    """Records read per second over the last five seconds, for the status line."""

    window: deque[tuple[float, int]] = field(default_factory=deque)

    def update(self, now: float, read: int) -> float:
        self.window.append((now, read))
        while self.window and now - self.window[0][0] > 5.0:
            self.window.popleft()
        span = now - self.window[0][0] if self.window else 0.0
        return (read - self.window[0][1]) / span if span > 0.2 else 0.0


class _StatusTicker:
    """Redraws the status line on idle ticks: shown, rate, elapsed, lag per partition."""

    def __init__(self, replay: Replay, status: StatusLine) -> None:
        self.replay = replay
        self.status = status
        self.started = time.monotonic()
        self.ends: dict[TopicPartition, int] = {}
        self.ends_at = 0.0
        self.rate = _Rate()

    def tick(self) -> None:
        if not self.status.enabled:
            return
        now = time.monotonic()
        if now - self.ends_at > 1.0:
            self.ends_at = now
            self.ends = self.replay.latest_ends()
        rate = self.rate.update(now, self.replay.stats.read)
        self.status.update(self._text(rate))
        self.status.redraw()

    def _text(self, rate: float) -> str:
        stats, tps = self.replay.stats, self.replay.partitions
        elapsed = time.monotonic() - self.started
        parts = [f"{human_count(stats.emitted)} shown", f"{rate:.0f} rec/s", f"{elapsed:.0f}s"]
        if self.ends:
            ends = self.ends
            lags = {
                tp: max(0, ends[tp] - stats.positions.get(tp, ends[tp])) for tp in tps if tp in ends
            }
            one_topic = len({t.topic for t in tps}) == 1
            detail = " ".join(
                f"{'p' + str(tp.partition) if one_topic else str(tp)}={lag}"
                for tp, lag in lags.items()
            )
            total = sum(lags.values())
            parts.append(f"lag {total}" + (f" ({detail})" if len(lags) <= 8 else ""))
        return "following · " + " · ".join(parts) + " · Ctrl-C to stop"


def _check_offset_exists(
    source: RecordSource, tps: Sequence[TopicPartition], offset: int, wait: bool
) -> None:
    """``--from N`` where no partition has reached N yet: fail (naming the end offsets), or
    say once on stderr what is being waited for."""
    ends = source.end_offsets(tps)
    if not ends or any(end >= offset for end in ends.values()):
        return
    shown = ", ".join(f"{tp.topic}-{tp.partition}: {end}" for tp, end in sorted(ends.items()))
    topics = ", ".join(sorted({tp.topic for tp in tps}))
    if not wait:
        raise fail(f"no partition of {topics} reaches offset {offset} (end offsets: {shown})")
    click.echo(
        f"waiting: no partition of {topics} reaches offset {offset} yet (end offsets: {shown})",
        err=True,
    )


def open_source(app: AppContext, data_dir: Path | None, group: str | None) -> RecordSource:
    source = app.source(data_dir)
    if group is not None and not supports_groups(source):
        raise fail(f"--group {group}: this source cannot join consumer groups (a broker can)")
    return source


def _print_all(replay: Replay, printer: _Printer) -> None:
    ticker = _StatusTicker(replay, printer.status)
    for item in replay.records():
        if item is not None:
            printer.print(item)
            continue
        printer.writer.flush()
        ticker.tick()


def _print_summary(stats: ReplayStats, started: float, f: RecordFilter, stderr: IO[str]) -> None:
    elapsed = time.monotonic() - started
    extra = []
    if f.matcher.active:
        extra.append(f"{f.stats.matched} matched")
    if f.stats.sampled_out:
        extra.append(f"{f.stats.sampled_out} sampled out")
    if f.stats.rate_dropped:
        extra.append(f"{f.stats.rate_dropped} over --rate")
    more = f" ({', '.join(extra)})" if extra else ""
    click.echo(
        f"{stats.emitted} records shown, {stats.read} read{more} in {elapsed:.1f}s", file=stderr
    )


def run(
    request: ReplayRequest,
    *,
    filters: FilterOptions,
    printing: PrintOptions,
    data_dir: Path | None,
    app: AppContext,
    wait_past_end: bool = True,
) -> ReplayStats:
    """Read and print; returns the stats (the caller decides the exit code).

    ``--from N`` beyond the end of every partition: with ``wait_past_end`` and following, say
    once on stderr what is awaited; otherwise fail (consume follows by nature, not on
    request: it passes False)."""
    started = time.monotonic()
    printer = _Printer(printing, request, app)
    record_filter = filters.build(app.clock)
    source = open_source(app, data_dir, request.group)
    replay = Replay(source, request, record_filter=record_filter, clock=app.clock)
    if isinstance(request.start, ts.Offset):
        wait = request.follow and wait_past_end
        _check_offset_exists(source, replay.partitions, request.start.offset, wait)
    interrupted = False
    try:
        _print_all(replay, printer)
    except KeyboardInterrupt:
        interrupted = True
    except NoPartitionsAssigned as exc:
        raise fail(str(exc)) from None
    finally:
        printer.close()
        replay.commit()
    if printing.summary and (request.follow or interrupted) and params.is_tty(printer.stderr):
        _print_summary(replay.stats, started, record_filter, printer.stderr)
    elif printing.summary and not replay.stats.emitted and params.is_tty(printer.stderr):
        # On a terminal, silence would look like a hang or a wrong topic; scripts see nothing.
        read = replay.stats.read
        why = f"none of the {read} read matched" if read else "-f waits for new ones"
        printer.stderr.write(f"no records to show ({why})\n")
    return replay.stats
