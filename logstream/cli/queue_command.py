"""``logstream queue list|create|configure|describe|peek|redrive|delete``: queue groups.

Thin: parse, call the queue methods of :class:`~logstream.client.group_admin.GroupAdmin`,
format (docs/queues.md).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from logstream.cli import params
from logstream.cli.context import app
from logstream.cli.group_command import human_duration
from logstream.cli.output import emit_rows

SETTING_OPTIONS = (
    click.option("--lease-ms", type=click.IntRange(min=1), default=None, help="Lease of a record."),
    click.option(
        "--max-deliveries",
        type=click.IntRange(1, 65_535),
        default=None,
        help="Deliveries before the dead-letter topic.",
    ),
    click.option("--backoff-initial-ms", type=click.IntRange(min=0), default=None),
    click.option("--backoff-max-ms", type=click.IntRange(min=0), default=None),
    click.option("--dead-letter-topic", default=None, help="Default: GROUP.dlq"),
    click.option("--key-ordered/--no-key-ordered", default=None),
    click.option("--auto-ack/--no-auto-ack", default=None, help="No-ACK mode (at most once)."),
    click.option("--window-size", type=click.IntRange(min=1), default=None),
    click.option("--expired-action", type=click.Choice(["dead-letter", "drop"]), default=None),
)


def _settings_options(fn: Any) -> Any:
    for opt in reversed(SETTING_OPTIONS):
        fn = opt(fn)
    return fn


def _output(output: str | None) -> str:
    return output or params.default_output(sys.stdout)


def _admin() -> Any:
    from logstream.client.group_admin import GroupAdmin

    ctx = app()
    admin = GroupAdmin(ctx.broker)
    ctx.close_later(admin.close)
    return admin


def _due(next_due_ms: int, mode: str) -> Any:
    """When the next delayed record is due: "in 4.2s" in a table, epoch ms otherwise."""
    if mode != "table":
        return next_due_ms
    if next_due_ms < 0:
        return "-"
    import time

    left = next_due_ms - int(time.time() * 1000)
    return "now" if left <= 0 else "in " + human_duration(left)


def _settings_rows(group: str, settings: dict[str, Any]) -> list[dict[str, Any]]:
    # An empty dead_letter_topic is the default, GROUP.dlq: show the topic the dead letters
    # go to (as describe does), not an empty cell.
    shown = {**settings, "dead_letter_topic": settings.get("dead_letter_topic") or f"{group}.dlq"}
    return [{"setting": k, "value": v} for k, v in shown.items()]


@click.group(
    epilog="""\b
Examples:
  logstream queue create video-workers --topic videos --max-deliveries 3 --lease-ms 10000
  logstream queue describe video-workers          depth, in flight, oldest age, members
  logstream queue peek video-workers -n 5
  logstream queue redrive video-workers            (dry run: what would move)
  logstream queue redrive video-workers --reason rejected --execute
  logstream queue configure video-workers --lease-ms 60000
  logstream tail --queue video-workers --ack      work as a member, ack what is printed
"""
)
def queue() -> None:
    """Create, inspect, configure, redrive and delete queue groups (work queues)."""


@queue.command(name="list", epilog="Example: logstream queue list -o json")
@params.output_option
def list_(output: str | None) -> None:
    """Every queue group: topics, members, depth, in flight, age of the oldest record."""
    mode = _output(output)
    rows = [
        {
            "group": g.group,
            "topics": list(g.topics),
            "members": g.members,
            "depth": g.depth,
            "in_flight": g.acquired,
            "oldest": human_duration(g.oldest_unfinished_age_ms)
            if mode == "table"
            else g.oldest_unfinished_age_ms,
        }
        for g in _admin().list_queue_groups()
    ]
    columns = ["group", "topics", "members", "depth", "in_flight", "oldest"]
    emit_rows(rows, columns, mode, colour=app().colour)


@queue.command(epilog="Example: logstream queue create jobs-workers --topic jobs --lease-ms 10000")
@click.argument("group", metavar="GROUP")
@click.option("--topic", "-t", "topics", multiple=True, required=True, help="Topic to read.")
@click.option(
    "--start",
    default=None,
    metavar="earliest|latest|MS",
    help="Where the group starts on each partition.  [default: earliest]",
)
@_settings_options
@params.output_option
def create(group: str, topics: tuple[str, ...], output: str | None, **settings: Any) -> None:
    """Create queue group GROUP reading TOPICs."""
    values = {k: v for k, v in settings.items() if v is not None}
    got = _admin().create_queue_group(group, topics=list(topics), **values)
    emit_rows(
        _settings_rows(group, got), ["setting", "value"], _output(output), colour=app().colour
    )
    click.echo(f"created queue group {group}", err=True)


@queue.command(epilog="Example: logstream queue configure jobs-workers --max-deliveries 10")
@click.argument("group", metavar="GROUP")
@_settings_options
@params.output_option
def configure(group: str, output: str | None, **settings: Any) -> None:
    """Change settings of GROUP (applied to every partition at once)."""
    values = {k: v for k, v in settings.items() if v is not None}
    if not values:
        raise click.UsageError("give at least one setting to change")
    got = _admin().alter_queue_group(group, **values)
    emit_rows(
        _settings_rows(group, got), ["setting", "value"], _output(output), colour=app().colour
    )


@queue.command(epilog="Example: logstream queue describe jobs-workers --members")
@click.argument("group", metavar="GROUP")
@click.option("--members", is_flag=True, help="Also list the members and what they hold.")
@params.output_option
def describe(group: str, members: bool, output: str | None) -> None:
    """Per partition and in total: available, in flight, delayed (and when the next one is
    due), expired, acked, dead-lettered, redelivered, and the age of the oldest unfinished
    record (the figure to alert on)."""
    d = _admin().describe_queue_group(group)
    mode = _output(output)

    def row(p: Any) -> dict[str, Any]:
        return {
            "topic": p.topic,
            "partition": p.partition if p.partition >= 0 else "total",
            "depth": p.depth,
            "available": p.available + p.unread,
            "in_flight": p.acquired,
            "delayed": p.delayed,
            "next_due": _due(p.next_due_ms, mode),
            "expired": p.expired,
            "acked": p.acknowledged,
            "dead": p.dead_lettered,
            "redelivered": p.redelivered,
            "lost": p.lost_to_retention,
            "oldest": human_duration(p.oldest_unfinished_age_ms)
            if mode == "table"
            else p.oldest_unfinished_age_ms,
        }

    rows = [row(p) for p in d.partitions] + [row(d.total)]
    if mode == "table":
        s = d.settings
        click.echo(
            f"queue group {d.group}: {len(d.members)} members, lease {s['lease_ms']} ms, "
            f"max deliveries {s['max_deliveries']}, dead letters to {d.dead_letter_topic}"
        )
    columns = [
        "topic",
        "partition",
        "depth",
        "available",
        "in_flight",
        "delayed",
        "next_due",
        "expired",
        "acked",
        "dead",
        "redelivered",
        "lost",
        "oldest",
    ]
    if mode == "json":
        import json

        body = {
            "group": d.group,
            "settings": d.settings,
            "dead_letter_topic": d.dead_letter_topic,
            "partitions": rows,
            "invalid_schedule": d.invalid_schedule,
            "members": [
                {"member": m.member_id, "client": m.client_id, "held": m.held} for m in d.members
            ],
        }
        click.echo(json.dumps(body, indent=2))
        return
    emit_rows(rows, columns, mode, colour=app().colour)
    if members and d.members:
        if mode == "table":
            click.echo()
        mrows = [
            {"member": m.member_id, "client": m.client_id or None, "held": m.held}
            for m in d.members
        ]
        emit_rows(mrows, ["member", "client", "held"], mode, colour=app().colour)


@queue.command(epilog="Example: logstream queue peek jobs-workers -n 5 -o json")
@click.argument("group", metavar="GROUP")
@click.option("-n", "--max-records", type=click.IntRange(min=1), default=10)
@params.output_option
def peek(group: str, max_records: int, output: str | None) -> None:
    """Records a worker would get now, without acquiring them."""
    from logstream.cli.formatting import json_bytes, safe_text

    mode = _output(output)
    rows = []
    for m in _admin().peek(group, max_records):
        row: dict[str, Any] = {"topic": m.topic, "partition": m.partition, "offset": m.offset}
        for name, data in (("key", m.key), ("value", m.value)):
            if mode in ("json", "jsonl"):  # null as null, not "-"; bytes as in tail -o jsonl
                json_bytes(row, name, data)
            else:
                row[name] = safe_text(data, null="-")
        rows.append(row)
    columns = ["topic", "partition", "offset", "key", "value"]
    emit_rows(rows, columns, mode, colour=app().colour)


@queue.command(
    epilog="""\b
Examples:
  logstream queue redrive jobs-workers                        (dry run)
  logstream queue redrive jobs-workers --reason max-deliveries --execute
  logstream queue redrive jobs-workers --to-topic jobs-retry --execute
"""
)
@click.argument("group", metavar="GROUP")
@click.option(
    "--reason",
    "reasons",
    multiple=True,
    type=click.Choice(["rejected", "max-deliveries", "expired"]),
    help="Only dead letters with this reason (repeatable).",
)
@click.option("--to-topic", default="", help="Write here instead of each record's source.")
@click.option("-n", "--max-records", type=click.IntRange(min=0), default=0, help="0: all.")
@click.option("--execute", is_flag=True, help="Move them (without it: a dry run).")
@params.output_option
def redrive(
    group: str,
    reasons: tuple[str, ...],
    to_topic: str,
    max_records: int,
    execute: bool,
    output: str | None,
) -> None:
    """Copy GROUP's dead letters back to their source topic (each at most once)."""
    items = _admin().redrive(
        group, execute=execute, reasons=list(reasons), to_topic=to_topic, max_records=max_records
    )
    rows = [
        {
            "dlq_offset": i.dead_letter_offset,
            "source": f"{i.source_topic}-{i.source_partition}@{i.source_offset}",
            "reason": i.reason,
            "target": f"{i.target_topic}-{i.target_partition}",
        }
        for i in items
    ]
    emit_rows(
        rows, ["dlq_offset", "source", "reason", "target"], _output(output), colour=app().colour
    )
    if execute:
        click.echo(f"redrove {len(items)} records of queue group {group}", err=True)
    else:
        click.echo(
            f"dry run: {len(items)} records would move; add --execute to move them", err=True
        )


@queue.command(epilog="Example: logstream queue delete jobs-workers")
@click.argument("group", metavar="GROUP")
@click.option("--force", is_flag=True, help="Delete even while members are connected.")
def delete(group: str, force: bool) -> None:
    """Delete GROUP and its state (its dead-letter topic stays)."""
    _admin().delete_queue_group(group, force=force)
    click.echo(f"deleted queue group {group}")
