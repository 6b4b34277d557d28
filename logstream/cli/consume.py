"""``logstream consume``: the script-oriented sibling of ``tail`` (see docs/cli.md)."""

from __future__ import annotations

from typing import Any

import click

from logstream.cli import records
from logstream.cli.context import app
from logstream.cli.options import (
    FilterOptions,
    PrintOptions,
    RangeOptions,
    count_option,
    filter_options,
    format_options,
    group_option,
    output_default_help,
    range_options,
)
from logstream.replay import timespec as ts

EPILOG = """\b
Examples:
  logstream consume orders --from beginning --exit-at-end > orders.txt
  logstream consume orders --from @2024-05-01 --until @2024-05-02 -o jsonl
  logstream consume orders --from 1200 -c 100 --format '{key}\\t{value}'
  logstream consume orders | ./process.sh           new records, forever
  logstream consume orders --group billing          a member of billing: shares, commits
"""


@click.command(epilog=EPILOG)
@click.argument("topics", nargs=-1, required=True, metavar="TOPIC [TOPIC...]")
@click.option(
    "--exit-at-end",
    "-e",
    is_flag=True,
    help="Exit once the end offsets seen at start are reached (same as --until end).",
)
@count_option("Exit after N records.")
@group_option(
    "Read as a member of consumer group G: members split the partitions; each starts at "
    "G's commits (--from where none) and commits what it printed."
)
@range_options
@filter_options
@format_options(output_default_help(tail=False))
def consume(
    topics: tuple[str, ...],
    exit_at_end: bool,
    max_records: int | None,
    group: str | None,
    **kwargs: Any,
) -> None:
    """Stream records of TOPICs to stdout, one per line (the value by default).

    Starts at the end (new records only) unless --from or --group says otherwise, and runs
    until Ctrl-C, --until, --exit-at-end or --count. No colour, no status line.
    """
    if exit_at_end:
        if kwargs.get("stop") is not None:
            raise click.UsageError("--exit-at-end and --until do not mix (it is --until end)")
        kwargs["stop"] = ts.End()
    if kwargs.get("start") is None and kwargs.get("since") is None and not group:
        kwargs["start"] = ts.End()
    span = RangeOptions.take(kwargs)
    filters = FilterOptions.take(kwargs)
    printing = PrintOptions.take(kwargs, status=False, summary=False, default_template="{value}")
    request = span.request(topics, follow=True, group=group, limit=max_records)
    records.run(
        request,
        filters=filters,
        printing=printing,
        data_dir=span.data_dir,
        app=app(),
        wait_past_end=False,
    )
