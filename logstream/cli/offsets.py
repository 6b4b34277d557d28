"""``logstream offsets``: start/end offsets per partition, and the offset at a point in time."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from logstream.cli import params
from logstream.cli.context import app
from logstream.cli.formatting import format_time_iso
from logstream.cli.output import emit_rows
from logstream.replay.ranges import resolve_partitions

EPILOG = """\b
Examples:
  logstream offsets orders                        start and end offset of every partition
  logstream offsets orders --at @-1h              the offsets one hour ago
  logstream offsets orders --at 2024-05-01T12:00Z -p 0,1 -o json
The offset at TIME is the first record with a timestamp >= TIME (the end offset when none).
"""


@click.command(epilog=EPILOG)
@click.argument("topic")
@click.option(
    "--at",
    "at",
    type=params.AT_TIME,
    default=None,
    metavar="TIME",
    help="A point in time: ISO-8601, epoch s/ms, or relative (-1h; a leading @ is allowed).",
)
@click.option("-p", "--partition", "partitions", type=params.PARTITIONS, default=None)
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Read segment files in DIR directly, without a broker.",
)
@click.option("-o", "--output", type=click.Choice(params.OUTPUT_MODES), default=None)
def offsets(
    topic: str,
    at: int | None,
    partitions: list[int] | None,
    data_dir: Path | None,
    output: str | None,
) -> None:
    """Offsets of TOPIC per partition: start, end, and (with --at) the offset at a time."""
    ctx = app()
    source = ctx.source(data_dir)
    tps = resolve_partitions(source, [topic], partitions)
    begin = source.beginning_offsets(tps)
    end = source.end_offsets(tps)
    found = source.offsets_for_times({tp: at for tp in tps}) if at is not None else {}
    rows = []
    for tp in tps:
        row: dict[str, object] = {
            "partition": tp.partition,
            "start_offset": begin[tp],
            "end_offset": end[tp],
        }
        if at is not None:
            off = found.get(tp)
            row["offset"] = end[tp] if off is None else off
        rows.append(row)
    mode = output or params.default_output(sys.stdout)
    columns = ["partition", "start_offset", "end_offset"] + (["offset"] if at is not None else [])
    if at is not None and mode == "table":
        click.echo(f"offsets of {topic} at {format_time_iso(at, ctx.tz)}")
    emit_rows(rows, columns, mode)
