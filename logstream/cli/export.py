"""``logstream export``: replay a range of records into a JSONL, CSV or Parquet file.

Columns (CSV and Parquet): topic, partition, offset, timestamp (ms), time (ISO-8601 UTC),
key, value, headers (a JSON object). CSV/JSONL keys and values are text when they are UTF-8,
else base64 (JSONL marks it with ``<field>_encoding``); Parquet stores them as binary and the
timestamp as ``timestamp[ms, UTC]``. Parquet needs pyarrow: ``pip install 'logstream[analytics]'``.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import os
import secrets
import sys
from pathlib import Path
from typing import IO, Any, Protocol

import click

from logstream.cli import params
from logstream.cli.context import AppContext, app
from logstream.cli.formatting import format_time_iso, record_to_json
from logstream.cli.lazy_group import fail
from logstream.cli.options import FilterOptions, RangeOptions, filter_options, range_options
from logstream.replay import timespec as ts
from logstream.replay.filters import RecordFilter
from logstream.replay.merge import read_ranges
from logstream.replay.ranges import Range, plan_ranges, resolve_partitions
from logstream.replay.source import RecordSource
from logstream.types import Record, TopicPartition

FORMATS = ("jsonl", "csv", "parquet")
CSV_COLUMNS = ["topic", "partition", "offset", "timestamp", "time", "key", "value", "headers"]

EPILOG = """\b
Examples:
  logstream export orders --since 1d --to orders.jsonl
  logstream export orders --from @2024-05-01 --until @2024-05-02 --to may1.parquet
  logstream export orders payments --from beginning --to all.csv --grep refund
  logstream export orders --since 1h --to - | gzip > orders.jsonl.gz
"""


def _text(data: bytes | None) -> str:
    if data is None:
        return ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode("ascii")


class Sink(Protocol):
    def write(self, r: Record) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, r: Record) -> None:
        self.out.write(json.dumps(record_to_json(r), ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.out.flush()


class CsvSink:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.w = csv.writer(out)
        self.w.writerow(CSV_COLUMNS)

    def write(self, r: Record) -> None:
        headers = record_to_json(r)["headers"]
        self.w.writerow(
            [
                r.topic,
                r.partition,
                r.offset,
                r.timestamp_ms,
                format_time_iso(r.timestamp_ms),
                _text(r.key),
                _text(r.value),
                json.dumps(headers) if headers else "",
            ]
        )

    def close(self) -> None:
        self.out.flush()


class ParquetSink:
    ROWS = 100_000

    def __init__(self, path: Path, pa: Any, pq: Any) -> None:
        self.pa, self.pq = pa, pq
        self.schema = pa.schema(
            [
                ("topic", pa.string()),
                ("partition", pa.int32()),
                ("offset", pa.int64()),
                ("timestamp", pa.timestamp("ms", tz="UTC")),
                ("key", pa.binary()),
                ("value", pa.binary()),
                ("headers", pa.string()),
            ]
        )
        self.writer = pq.ParquetWriter(str(path), self.schema)
        self.rows: list[Record] = []

    def write(self, r: Record) -> None:
        self.rows.append(r)
        if len(self.rows) >= self.ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        rs = self.rows
        cols = [
            [r.topic for r in rs],
            [r.partition for r in rs],
            [r.offset for r in rs],
            [r.timestamp_ms for r in rs],
            [r.key for r in rs],
            [r.value for r in rs],
            [json.dumps(record_to_json(r)["headers"]) if r.headers else None for r in rs],
        ]
        self.writer.write_table(
            self.pa.Table.from_arrays(
                [self.pa.array(c, type=f.type) for c, f in zip(cols, self.schema, strict=True)],
                schema=self.schema,
            )
        )
        self.rows = []

    def close(self) -> None:
        self._flush()
        self.writer.close()


def _format_for(path: str, given: str | None) -> str:
    if given:
        return given
    if path == "-":
        return "jsonl"
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix in FORMATS:
        return suffix
    raise click.BadParameter(
        f"cannot tell the format of {path!r}: use .jsonl, .csv or .parquet, or --format",
        param_hint="'--to'",
    )


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise fail(
            "writing Parquet needs pyarrow, which is not installed: "
            "pip install 'logstream[analytics]' (or export to .jsonl / .csv)"
        ) from None
    return pa, pq


def _check_target(to: str, fmt: str, force: bool) -> tuple[Any, Any] | None:
    """Refuse what cannot be written before reading anything; pyarrow for Parquet."""
    if fmt == "parquet" and to == "-":
        raise click.UsageError("Parquet cannot be written to stdout; give a file name")
    pa_pq = _pyarrow() if fmt == "parquet" else None
    if to != "-" and Path(to).exists() and not force:
        raise fail(f"{to} exists; use --force to overwrite")
    if to != "-" and not Path(to).parent.is_dir():
        raise fail(f"cannot write {to}: the directory {Path(to).parent} does not exist")
    return pa_pq


def _export_range(span: RangeOptions) -> tuple[ts.StartSpec, ts.StopSpec]:
    """Everything up to now unless --from/--since/--until say otherwise."""
    start = span.start or span.since or ts.Beginning()
    if span.start is not None and span.since is not None:
        raise click.UsageError("--since and --from do not mix")
    stop = span.stop or ts.End()
    try:
        ts.check_order(start, stop)
    except ts.TimeSpecError as exc:
        raise click.UsageError(str(exc)) from None
    return start, stop


def _plan(
    ctx: AppContext, topics: tuple[str, ...], span: RangeOptions
) -> tuple[RecordSource, dict[TopicPartition, Range]]:
    start, stop = _export_range(span)
    source = ctx.source(span.data_dir)
    tps = resolve_partitions(source, topics, span.partitions)
    return source, plan_ranges(source, tps, start, stop, now_ms=ctx.clock.now_ms())


def _open_sink(
    path: Path | None, to: str, fmt: str, pa_pq: tuple[Any, Any] | None
) -> tuple[Sink, IO[str] | None]:
    """The sink writing to ``path`` (None: stdout), and the text file it writes to (None for
    Parquet and for stdout's owner). ``to`` names the target in errors."""
    try:
        if fmt == "parquet":
            assert pa_pq is not None and path is not None
            return ParquetSink(path, *pa_pq), None
        out = sys.stdout if path is None else open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise fail(f"cannot write {to}: {exc.strerror or exc}") from None
    return (JsonlSink(out) if fmt == "jsonl" else CsvSink(out)), out


def _temporary_path(target: Path) -> Path:
    """A new, empty file next to ``target`` (same file system, so the final rename is atomic).

    Created with mode 0666 less the umask, as ``>`` or ``cp`` would make the file: the
    rename keeps this mode, and ``tempfile.mkstemp``'s 0600 left every export readable by
    its owner only."""
    for _ in range(100):
        path = target.parent / f".{target.name}.{secrets.token_hex(4)}.partial"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise fail(f"cannot create a temporary file next to {target}")


def _remove(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _copy(
    source: RecordSource,
    plan: dict[TopicPartition, Range],
    keep: RecordFilter,
    sink: Sink,
    show_progress: bool,
) -> int:
    """Every record of the plan that passes ``keep`` into ``sink``; returns how many."""
    total = sum(max(0, (r.stop or r.start) - r.start) for r in plan.values())
    written = 0
    bar = (
        click.progressbar(
            length=total, label="exporting", file=sys.stderr, show_pos=True, show_eta=True
        )
        if show_progress
        else _NoBar()
    )
    with bar:
        pending = 0
        for item in read_ranges(source, plan, follow=False):
            if item is None:
                continue
            pending += 1
            if keep(item):
                sink.write(item)
                written += 1
            if pending >= 1000:
                bar.update(pending)
                pending = 0
        bar.update(pending)
    return written


@click.command(epilog=EPILOG)
@click.argument("topics", nargs=-1, required=True, metavar="TOPIC [TOPIC...]")
@click.option("--to", "to", required=True, metavar="PATH", help="Output file; '-' is stdout.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="File format (default: from the extension).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: when stderr is a TTY).",
)
@range_options
@filter_options
def export(
    topics: tuple[str, ...], to: str, fmt: str | None, force: bool, progress: bool | None, **kw: Any
) -> None:
    """Write the records of TOPICs in a range (default: everything up to now) to a file.

    The range uses the tail/consume grammar: --from (default beginning), --until (default
    end: the end offsets when export started), --since.
    """
    span = RangeOptions.take(kw)
    filters = FilterOptions.take(kw)
    fmt = _format_for(to, fmt)
    pa_pq = _check_target(to, fmt, force)
    ctx = app()
    source, plan = _plan(ctx, topics, span)
    keep = filters.build(ctx.clock)
    # Written under a temporary name in the same directory and renamed when complete, so an
    # interrupted or failed export never leaves a partial file under the name asked for.
    partial = None if to == "-" else _temporary_path(Path(to))
    try:
        sink, out = _open_sink(partial, to, fmt, pa_pq)
    except BaseException:
        _remove(partial)
        raise
    show = params.is_tty(sys.stderr) if progress is None else progress
    complete = False
    try:
        written = _copy(source, plan, keep, sink, show)
        complete = True
    finally:
        try:
            sink.close()
            if out is not None and out is not sys.stdout:
                out.close()
            if complete and partial is not None:
                os.replace(partial, to)
        finally:
            if partial is not None and partial.exists():
                _remove(partial)
    where = "stdout" if to == "-" else to
    click.echo(
        f"exported {written} records from {', '.join(topics)} to {where} ({fmt})", err=to == "-"
    )


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int) -> None:
        pass
