"""``logstream consume``: the script-oriented sibling of ``tail`` (see docs/cli.md)."""

from __future__ import annotations

from typing import Any

import click

from logstream.cli import records
from logstream.cli import timespec as ts
from logstream.cli.context import app

EPILOG = """\b
Examples:
  logstream consume orders --from beginning --exit-at-end > orders.txt
  logstream consume orders --from @2024-05-01 --until @2024-05-02 -o jsonl
  logstream consume orders --from 1200 -c 100 --format '{key}\\t{value}'
  logstream consume orders | ./process.sh           new records, forever
  logstream consume orders --group billing          resume and commit (when groups exist)
"""


@click.command(epilog=EPILOG)
@click.argument("topics", nargs=-1, required=True, metavar="TOPIC [TOPIC...]")
@click.option(
    "--exit-at-end",
    "-e",
    is_flag=True,
    help="Exit once the end offsets seen at start are reached (same as --until end).",
)
@click.option(
    "-c",
    "--count",
    "max_records",
    type=click.IntRange(min=1),
    default=None,
    help="Exit after N records.",
)
@click.option(
    "--group",
    default=None,
    metavar="G",
    help="Resume from and commit to consumer group G (when groups exist).",
)
@records.range_options
@records.filter_options
@records.format_options(records.output_default_help(tail=False))
def consume(topics: tuple[str, ...], exit_at_end: bool, **kwargs: Any) -> None:
    """Stream records of TOPICs to stdout, one per line (the value by default).

    Starts at the end (new records only) unless --from or --group says otherwise, and runs
    until Ctrl-C, --until, --exit-at-end or --count. No colour, no status line.
    """
    if exit_at_end:
        if kwargs.get("stop") is not None:
            raise click.UsageError("--exit-at-end and --until do not mix (it is --until end)")
        kwargs["stop"] = ts.End()
    if kwargs.get("start") is None and kwargs.get("since") is None and not kwargs.get("group"):
        kwargs["start"] = ts.End()
    opts = records.ReadOptions(
        topics=topics,
        follow=True,
        status=False,
        summary=False,
        default_template="{value}",
        **kwargs,
    )
    records.run(opts, app())
