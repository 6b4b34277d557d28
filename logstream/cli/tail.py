"""``logstream tail``: watch topics like Unix tail (see docs/cli.md)."""

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

EPILOG = """\b
Examples:
  logstream tail orders                     the last 10 records, then exit
  logstream tail orders -n 50 -f            the last 50, then follow (Ctrl-C to stop)
  logstream tail orders --since 3d          the last 3 days, then exit
  logstream tail orders --from @-15m -f     from 15 minutes ago, and keep following
  logstream tail orders --from beginning --until @2024-05-01T12:00
  logstream tail orders payments -f --grep 'error|timeout' --key user-42
  logstream tail orders -f -o jsonl | jq .value
  logstream tail orders --format '%T %k %s'         kcat tokens
  logstream tail orders --format '{timestamp:iso} {partition}:{offset} {header:trace-id}'
  logstream tail orders --data-dir ./logstream-data  read segment files, no broker
  logstream tail --queue workers --ack -f   work as a queue-group member, ack what is printed
"""


@click.command(epilog=EPILOG)
@click.argument("topics", nargs=-1, required=False, metavar="TOPIC [TOPIC...]")
@click.option(
    "-n",
    "--lines",
    "last",
    type=click.IntRange(min=0),
    default=None,
    help="Show the last N records across partitions (by timestamp).  [default: 10]",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records until Ctrl-C.")
@count_option("Exit after printing N records.")
@range_options
@filter_options
@format_options(output_default_help(tail=True))
@group_option(
    "Read as a member of consumer group G: members split the partitions; each starts at "
    "G's commits (--from where none) and commits what it printed. Otherwise tail commits "
    "nothing."
)
@click.option(
    "--queue",
    "queue_group",
    default=None,
    metavar="G",
    help="Work as a member of queue group G instead: without --ack the records are "
    "released at exit, which counts a delivery each (queue peek G looks without taking).",
)
@click.option("--ack", is_flag=True, help="With --queue: acknowledge what is printed.")
@click.option(
    "--status/--no-status",
    default=None,
    help="Live status line on stderr while following (default: on a TTY).",
)
def tail(
    topics: tuple[str, ...],
    last: int | None,
    follow: bool,
    max_records: int | None,
    group: str | None,
    queue_group: str | None,
    ack: bool,
    **kwargs: Any,
) -> None:
    """Print the last records of TOPICs, or follow them.

    \b
    Start and stop (one grammar for tail, consume and export):
      --from  beginning | end | N | -N | +N | @TIME
      --until end | N | +N | @TIME          end = the end offsets when tail started
      --since DURATION                      = --from @-DURATION
    TIME is ISO-8601 (2024-05-01, 2024-05-01T12:00:00Z), epoch seconds or milliseconds,
    or relative to now (@-15m, @-3d, @now).
    """
    span = RangeOptions.take(kwargs)
    filters = FilterOptions.take(kwargs)
    printing = PrintOptions.take(kwargs)
    if queue_group is not None:
        if topics:
            raise click.UsageError("--queue reads the group's topics; give no TOPIC")
        from logstream.cli import queue_tail

        limit = max_records if max_records is not None else (0 if follow else last or 10)
        queue_tail.run(
            queue_group, ack=ack, follow=follow, limit=limit, printing=printing, app=app()
        )
        return
    if ack:
        raise click.UsageError("--ack needs --queue")
    if not topics:
        raise click.UsageError("Missing argument 'TOPIC [TOPIC...]' (or give --queue G).")
    request = span.request(topics, last=last, follow=follow, group=group, limit=max_records)
    records.run(request, filters=filters, printing=printing, data_dir=span.data_dir, app=app())
