"""What ``tail`` and ``consume`` share: their options, and the loop that resolves the range,
reads, filters, formats, shows the status line and prints the summary.

The two commands differ only in defaults (see tail.py and consume.py): ``tail`` shows the
last 10 records for people; ``consume`` streams values for scripts.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from logstream.cli import params, reader
from logstream.cli import timespec as ts
from logstream.cli.context import AppContext
from logstream.cli.filters import Matcher, RateLimiter, RecordFilter, Sampler
from logstream.cli.formatting import (
    BINARY_MODES,
    Formatter,
    HumanFormatter,
    JsonlFormatter,
    TemplateError,
    TemplateFormatter,
    record_to_json,
)
from logstream.cli.group import fail
from logstream.cli.output import RecordWriter, StatusLine, human_count
from logstream.errors import UnknownTopicOrPartitionError
from logstream.types import Record, TopicPartition

RECORD_OUTPUTS = ("table", "plain", "jsonl", "json")


def _header_filter(value: str) -> tuple[str, str | None]:
    name, sep, v = value.partition("=")
    if not name:
        raise ValueError(f"bad --header {value!r}: expected NAME=VALUE or NAME")
    return name, (v if sep else None)


HEADER_FILTER = params._FnType("NAME[=VALUE]", _header_filter)


def range_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--from/--until/--since/-p/--data-dir."""
    for opt in reversed(
        [
            click.option(
                "--from",
                "start",
                type=params.START,
                default=None,
                help="Where to start: beginning, end, N (offset), -N (N before the end), "
                "+N (N after the start), @TIME.",
            ),
            click.option(
                "--until",
                "stop",
                type=params.STOP,
                default=None,
                help="Where to stop: end (the end when the command started), N (before "
                "offset N), +N (N records per partition), @TIME.",
            ),
            click.option(
                "--since",
                type=params.SINCE,
                default=None,
                help="Shortcut for --from @-DURATION: --since 10m, --since 3d, or a TIME.",
            ),
            click.option(
                "-p",
                "--partition",
                "partitions",
                type=params.PARTITIONS,
                default=None,
                help="Only these partitions: 0,3-5.",
            ),
            click.option(
                "--data-dir",
                type=click.Path(exists=True, file_okay=False, path_type=Path),
                default=None,
                help="Read segment files in DIR directly, without a broker (forensics).",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


def filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option(
                "--key",
                "keys",
                multiple=True,
                metavar="KEY",
                help="Only records with this key (repeat: any of them).",
            ),
            click.option(
                "--grep",
                default=None,
                metavar="REGEX",
                help="Only records whose value matches REGEX (Python syntax).",
            ),
            click.option(
                "--grep-invert",
                "-v",
                "invert_grep",
                is_flag=True,
                help="With --grep: only records that do NOT match.",
            ),
            click.option(
                "--header",
                "header_filters",
                type=HEADER_FILTER,
                multiple=True,
                help="Only records with header NAME (=VALUE); repeat for AND.",
            ),
            click.option(
                "--sample",
                type=params.SAMPLE,
                default=None,
                help="Keep one record in N (of those matching): 1/100.",
            ),
            click.option(
                "--rate",
                type=params.RATE,
                default=None,
                help="Print at most this many records per second; the rest are skipped "
                "and counted: 50/s.",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


def format_options(default_output_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        for opt in reversed(
            [
                click.option(
                    "-o",
                    "--output",
                    type=click.Choice(RECORD_OUTPUTS),
                    default=None,
                    help=default_output_help,
                ),
                click.option(
                    "--format",
                    "template",
                    default=None,
                    metavar="TEMPLATE",
                    help="Line template: {topic} {partition} {offset} {timestamp} "
                    "{timestamp:iso} {key} {value} {header:NAME} {headers}, or kcat's "
                    "%t %p %o %T %k %s %h.",
                ),
                click.option(
                    "--pretty/--compact",
                    default=None,
                    help="Indent JSON values (default: on a TTY).",
                ),
                click.option(
                    "--binary",
                    type=click.Choice(BINARY_MODES),
                    default="hex",
                    show_default=True,
                    help="How to show values that are not UTF-8.",
                ),
                click.option("--utc", is_flag=True, help="Show times in UTC (default: local)."),
                click.option(
                    "--color/--no-color",
                    "colour",
                    default=None,
                    help="Colour (default: on a TTY, unless NO_COLOR is set).",
                ),
            ]
        ):
            fn = opt(fn)
        return fn

    return deco


@dataclass
class ReadOptions:
    topics: Sequence[str]
    start: ts.StartSpec | None = None
    stop: ts.StopSpec | None = None
    since: ts.Timestamp | None = None
    partitions: Sequence[int] | None = None
    data_dir: Path | None = None
    last: int | None = None  # tail: the last N records before (optionally) following
    follow: bool = False
    max_records: int | None = None
    group: str | None = None
    keys: Sequence[str] = ()
    grep: str | None = None
    invert_grep: bool = False
    header_filters: Sequence[tuple[str, str | None]] = ()
    sample: int | None = None
    rate: float | None = None
    output: str | None = None
    template: str | None = None
    pretty: bool | None = None
    binary: str = "hex"
    utc: bool = False
    colour: bool | None = None
    status: bool | None = None
    summary: bool = True
    default_template: str | None = None  # consume: "{value}"


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    read: int = 0
    printed: int = 0
    positions: dict[TopicPartition, int] = field(default_factory=dict)


def make_formatter(o: ReadOptions, app: AppContext, stream: Any) -> tuple[Formatter, str]:
    """The formatter and the effective output mode."""
    tz = app.tz if not o.utc else __import__("datetime").UTC
    forced = o.colour if o.colour is not None else app.colour
    colour = params.use_colour(stream, forced)
    output = o.output or ("table" if params.is_tty(stream) or forced else "plain")
    if output in ("jsonl", "json"):
        if o.template:
            raise click.UsageError("--format and --output json/jsonl do not mix")
        return JsonlFormatter(tz=tz or __import__("datetime").UTC), output
    template = o.template or o.default_template
    if template:
        try:
            return TemplateFormatter(template, tz=tz, binary=o.binary), output
        except TemplateError as exc:
            raise click.BadParameter(str(exc), param_hint="'--format'") from None
    colour = colour and output == "table"
    pretty = o.pretty if o.pretty is not None else colour
    return (
        HumanFormatter(
            colour=colour, show_topic=len(o.topics) > 1, tz=tz, pretty=pretty, binary=o.binary
        ),
        output,
    )


def make_filter(o: ReadOptions, app: AppContext) -> RecordFilter:
    try:
        matcher = Matcher(
            keys=o.keys, grep=o.grep, headers=o.header_filters, invert_grep=o.invert_grep
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--grep'") from None
    return RecordFilter(
        matcher=matcher,
        sampler=Sampler(o.sample) if o.sample else None,
        limiter=RateLimiter(o.rate, app.clock) if o.rate else None,
    )


def resolve_partitions(
    source: reader.RecordSource, topics: Sequence[str], only: Sequence[int] | None
) -> list[TopicPartition]:
    tps: list[TopicPartition] = []
    for topic in dict.fromkeys(topics):
        parts = source.partitions_for(topic)
        if only is not None:
            missing = sorted(set(only) - set(parts))
            if missing:
                raise UnknownTopicOrPartitionError(
                    f"topic {topic!r} has no partition {', '.join(map(str, missing))} "
                    f"({len(parts)} partitions)"
                )
            parts = [p for p in parts if p in set(only)]
        tps.extend(TopicPartition(topic, p) for p in parts)
    return tps


class _JsonArray:
    """Streams records as one JSON array: '[' first, ',' between, ']' at the end."""

    def __init__(self, writer: RecordWriter, tz: Any) -> None:
        self.writer = writer
        self.tz = tz
        self.first = True

    def write(self, record: Record) -> None:
        prefix = "[\n  " if self.first else ",\n  "
        self.first = False
        self.writer.write(prefix + json.dumps(record_to_json(record, self.tz), ensure_ascii=False))

    def close(self) -> None:
        self.writer.stream.write("[]\n" if self.first else "\n]\n")


def run(o: ReadOptions, app: AppContext) -> Stats:
    """The whole read loop; returns the stats (the caller decides the exit code)."""
    if o.since is not None:
        if o.start is not None:
            raise click.UsageError("--since and --from do not mix (--since is --from @-DURATION)")
        o.start = o.since
    if o.last is not None and o.start is not None:
        raise click.UsageError("-n/--lines picks the last N records; with --from use -c/--count")
    if o.group is not None and o.data_dir is not None:
        raise click.UsageError("--group needs a broker; it does not work with --data-dir")
    try:
        ts.check_order(o.start, o.stop)
    except ts.TimeSpecError as exc:
        raise click.UsageError(str(exc)) from None

    stdout = sys.stdout
    stderr = sys.stderr
    formatter, output = make_formatter(o, app, stdout)
    record_filter = make_filter(o, app)
    follow_tty = o.follow and params.is_tty(stderr)
    status = StatusLine(stderr, enabled=follow_tty if o.status is None else o.status)
    writer = RecordWriter(stdout, status)
    jarray = _JsonArray(writer, app.tz or __import__("datetime").UTC) if output == "json" else None
    stats = Stats()

    source = app.source(o.data_dir)
    if o.group is not None:
        _group_hook(source, o.group)
    tps = resolve_partitions(source, o.topics, o.partitions)
    now = app.clock.now_ms()

    def emit(rec: Record) -> bool:
        """Print one record if it passes the filters; False once --count is reached."""
        if not record_filter(rec):
            return True
        if jarray is not None:
            jarray.write(rec)
        else:
            writer.write(formatter(rec))
        stats.printed += 1
        return o.max_records is None or stats.printed < o.max_records

    def records(plan: dict[TopicPartition, reader.Range], follow: bool) -> Iterator[Record | None]:
        for item in reader.read(source, plan, follow=follow, clock=app.clock):
            if item is not None:
                stats.read += 1
                stats.positions[TopicPartition(item.topic, item.partition)] = item.offset + 1
            yield item

    interrupted = False
    try:
        if o.start is None and o.group is None:
            # tail: the last N across partitions (by timestamp), then maybe follow.
            n = o.last if o.last is not None else 10
            plan = reader.tail_ranges(source, tps, n)
            if o.stop is not None and not isinstance(o.stop, ts.End):
                raise click.UsageError("without --from, --until can only be 'end'")
            last: deque[Record] = deque(maxlen=n)
            if n > 0:
                for item in records(plan, follow=False):
                    if item is not None and record_filter.matcher(item):
                        last.append(item)
            going = True
            for rec in last:
                if not emit(rec):
                    going = False
                    break
            writer.flush()
            if o.follow and going and not isinstance(o.stop, ts.End):
                follow_plan = {tp: reader.Range(r.stop or r.start) for tp, r in plan.items()}
                _follow(records(follow_plan, True), emit, writer, status, stats, source, tps)
        else:
            start = o.start if o.start is not None else ts.End()
            stop = o.stop if (o.stop is not None or o.follow) else ts.End()
            plan = reader.plan_ranges(source, tps, start, stop, now_ms=now, follow=o.follow)
            if o.group is not None and o.start is None:
                _group_start(source, plan)
            if o.follow:
                _follow(records(plan, True), emit, writer, status, stats, source, tps)
            else:
                for item in records(plan, follow=False):
                    if item is not None and not emit(item):
                        break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        status.clear()
        if jarray is not None:
            jarray.close()
        try:
            writer.flush()
        except BrokenPipeError:
            raise
        if o.group is not None:
            _group_commit(source, stats.positions)
    if o.summary and (o.follow or interrupted) and params.is_tty(stderr):
        _print_summary(stats, record_filter, stderr)
    return stats


def _follow(
    items: Iterator[Record | None],
    emit: Callable[[Record], bool],
    writer: RecordWriter,
    status: StatusLine,
    stats: Stats,
    source: Any,
    tps: Sequence[TopicPartition],
) -> None:
    ends: dict[TopicPartition, int] = {}
    last_ends = 0.0
    window: deque[tuple[float, int]] = deque()
    for item in items:
        if item is not None:
            if not emit(item):
                return
            continue
        writer.flush()
        if not status.enabled:
            continue
        now = time.monotonic()
        if now - last_ends > 1.0:
            last_ends = now
            ends = _ends(source, tps)
        window.append((now, stats.read))
        while window and now - window[0][0] > 5.0:
            window.popleft()
        span = now - window[0][0] if window else 0.0
        rate = (stats.read - window[0][1]) / span if span > 0.2 else 0.0
        status.update(_status_text(stats, ends, rate, tps))
        status.redraw()


def _ends(source: Any, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    hw = getattr(source, "highwater", None)
    if hw is not None:
        found = {tp: hw(tp) for tp in tps}
        if all(v is not None for v in found.values()):
            return found  # type: ignore[return-value]
    try:
        return dict(source.end_offsets(list(tps)))
    except Exception:  # the status line must never end the command
        return {}


def _status_text(
    stats: Stats, ends: dict[TopicPartition, int], rate: float, tps: Sequence[TopicPartition]
) -> str:
    elapsed = time.monotonic() - stats.started
    parts = [f"{human_count(stats.printed)} shown", f"{rate:.0f} rec/s", f"{elapsed:.0f}s"]
    if ends:
        lags = {
            tp: max(0, ends[tp] - stats.positions.get(tp, ends[tp])) for tp in tps if tp in ends
        }
        total = sum(lags.values())
        detail = " ".join(
            f"{'p' + str(tp.partition) if len({t.topic for t in tps}) == 1 else str(tp)}={lag}"
            for tp, lag in lags.items()
        )
        lag_text = f"lag {total}" + (f" ({detail})" if len(lags) <= 8 else "")
        parts.append(lag_text)
    return "following · " + " · ".join(parts) + " · Ctrl-C to stop"


def _print_summary(stats: Stats, f: RecordFilter, stderr: Any) -> None:
    elapsed = time.monotonic() - stats.started
    extra = []
    if f.matcher.active:
        extra.append(f"{f.stats.matched} matched")
    if f.stats.sampled_out:
        extra.append(f"{f.stats.sampled_out} sampled out")
    if f.stats.rate_dropped:
        extra.append(f"{f.stats.rate_dropped} over --rate")
    more = f" ({', '.join(extra)})" if extra else ""
    click.echo(
        f"{stats.printed} records shown, {stats.read} read{more} in {elapsed:.1f}s", file=stderr
    )


# -- consumer groups: the extension point ------------------------------------------------------


def _group_hook(source: Any, group: str) -> None:
    if not hasattr(source, "committed"):
        raise fail(
            f"--group {group}: consumer groups are not available in this version "
            "(tail and consume read without committing)"
        )
    source.group = group


def _group_start(source: Any, plan: dict[TopicPartition, reader.Range]) -> None:
    """With --group and no --from: resume from the group's committed offsets (partitions
    without one start at the end). Sources that support groups implement
    ``committed(tps) -> {tp: offset | None}`` and ``commit({tp: offset})``."""
    committed = source.committed(list(plan))
    for tp, r in plan.items():
        off = committed.get(tp)
        if off is not None:
            r.start = off


def _group_commit(source: Any, positions: dict[TopicPartition, int]) -> None:
    commit = getattr(source, "commit", None)
    if commit is not None and positions:
        commit(dict(positions))


def output_default_help(tail: bool) -> str:
    what = "the human line" if tail else "the value"
    return (
        f"table ({what}, coloured on a TTY), plain (no colour), jsonl (one JSON object per "
        "record, for jq) or json (one array). Default: table on a TTY, else plain."
    )


def stderr_is_tty() -> bool:
    return params.is_tty(sys.stderr)
