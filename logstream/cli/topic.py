"""``logstream topic create|list|describe|delete|alter|add-partitions``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from logstream.cli import params
from logstream.cli.context import app
from logstream.cli.output import emit_rows, human_bytes, render_table, table_width


def _output(output: str | None) -> str:
    return output or params.default_output(sys.stdout)


def _configs(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(pairs)


@click.group(
    epilog="""\b
Examples:
  logstream topic create orders --partitions 3 --config retention_ms=604800000
  logstream topic list
  logstream topic describe orders
  logstream topic alter orders --config retention_bytes=1073741824 --reset segment_ms
  logstream topic add-partitions orders --count 6
  logstream topic delete orders --yes         (--force: also when queue groups read it)
"""
)
def topic() -> None:
    """Create, list, describe, change and delete topics."""


@topic.command(epilog="Example: logstream topic create orders -p 3 -c retention_ms=86400000")
@click.argument("name")
@click.option("--partitions", "-p", type=click.IntRange(min=1), default=1, help="Partitions.")
@click.option(
    "--config",
    "-c",
    "config",
    type=params.KEY_VALUE,
    multiple=True,
    metavar="KEY=VALUE",
    help="Topic config (repeatable): retention_ms, retention_bytes, segment_bytes, ...",
)
@click.option("--if-not-exists", is_flag=True, help="Succeed if the topic already exists.")
def create(
    name: str, partitions: int, config: tuple[tuple[str, str], ...], if_not_exists: bool
) -> None:
    """Create topic NAME."""
    from logstream.errors import TopicAlreadyExistsError

    try:
        app().admin().create_topic(name, partitions, _configs(config))
    except TopicAlreadyExistsError:
        if not if_not_exists:
            raise
        click.echo(f"topic {name} already exists", err=True)
        return
    s = "s" if partitions != 1 else ""
    click.echo(f"created topic {name} with {partitions} partition{s}")


@topic.command(name="list", epilog="Example: logstream topic list -o json | jq '.[].name'")
@params.output_option
@click.option("--internal", is_flag=True, help="Include internal topics (__consumer_offsets).")
def list_(output: str | None, internal: bool) -> None:
    """List topics with their partitions, records and size."""
    admin = app().admin()
    names = [t.name for t in admin.list_topics(include_internal=internal)]
    descs = admin.describe_topics(names) if names else []
    rows = [
        {
            "name": d.name,
            "partitions": len(d.partitions),
            "records": sum(p.records for p in d.partitions),
            "size_bytes": d.size_bytes,
        }
        for d in sorted(descs, key=lambda d: d.name)
    ]
    mode = _output(output)
    if mode == "table":
        for r in rows:
            r["size"] = human_bytes(r["size_bytes"])
        if not rows:
            click.echo("no topics", err=True)
            return
        emit_rows(rows, ["name", "partitions", "records", "size"], mode)
    else:
        emit_rows(rows, ["name", "partitions", "records", "size_bytes"], mode)


def _describe_dict(d: Any) -> dict[str, Any]:
    return {
        "name": d.name,
        "internal": d.internal,
        "config": dict(sorted(d.config.items())),
        "size_bytes": d.size_bytes,
        "partitions": [
            {
                "partition": p.partition,
                "start_offset": p.log_start_offset,
                "end_offset": p.log_end_offset,
                "records": p.records,
                "flushed_offset": p.flushed_offset,
                "size_bytes": p.size_bytes,
                "segments": p.segment_count,
                "error": str(p.error) if p.error else None,
            }
            for p in d.partitions
        ],
    }


@topic.command(epilog="Example: logstream topic describe orders -o json")
@click.argument("names", nargs=-1, required=True, metavar="NAME [NAME...]")
@params.output_option
def describe(names: tuple[str, ...], output: str | None) -> None:
    """Partitions (start/end offsets, records, sizes) and config of topics."""
    descs = [_describe_dict(d) for d in app().admin().describe_topics(list(names))]
    mode = _output(output)
    if mode == "json":
        click.echo(json.dumps(descs if len(descs) > 1 else descs[0], indent=2))
        return
    if mode == "jsonl":
        for d in descs:
            click.echo(json.dumps(d))
        return
    columns = ["partition", "start_offset", "end_offset", "records", "size_bytes", "segments"]
    if mode == "plain":
        for d in descs:
            rows = [{"topic": d["name"], **p} for p in d["partitions"]]
            emit_rows(rows, ["topic", *columns], "plain")
        return
    colour = params.use_colour(sys.stdout, app().colour)
    for i, d in enumerate(descs):
        if i:
            click.echo()
        title = f"{d['name']}: {len(d['partitions'])} partitions, " + (
            f"{sum(p['records'] for p in d['partitions'])} records, {human_bytes(d['size_bytes'])}"
        )
        click.echo(click.style(title, bold=True) if colour else title)
        rows = [{**p, "size": human_bytes(p["size_bytes"])} for p in d["partitions"]]
        cols = ["partition", "start_offset", "end_offset", "records", "size", "segments"]
        click.echo(render_table(rows, cols, colour=colour, width=table_width(sys.stdout)), nl=False)
        if d["config"]:
            click.echo("config:")
            for k, v in d["config"].items():
                click.echo(f"  {k} = {v}")


@topic.command(epilog="Example: logstream topic delete orders --yes")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Delete it even if queue groups read it.")
def delete(name: str, yes: bool, force: bool) -> None:
    """Delete topic NAME and all its data (asks first on a terminal; refuses while queue
    groups read it, unless --force)."""
    admin = app().admin()
    readers = _queue_groups_reading(name)
    if readers and not force:
        who = (
            f"queue groups {', '.join(readers)} read"
            if readers[1:]
            else f"queue group {readers[0]} reads"
        )
        click.echo(
            f"error: {who} topic {name}: deleting it drops their waiting and in-flight "
            f"records; --force to delete it anyway, or logstream queue delete {readers[0]} first",
            err=True,
        )
        sys.exit(1)
    if not yes and params.is_tty(sys.stdin):
        admin.describe_topic(name)  # unknown topic: fail before asking
        if not click.confirm(f"delete topic {name} and all its records?", err=True):
            # Declining is an answer, not a failure: exit 0 as `rm -i` does, so it is not
            # taken for an error (1 means one, with an "error: ..." line; docs/cli.md).
            click.echo(f"topic {name} not deleted", err=True)
            return
    admin.delete_topic(name)
    click.echo(f"deleted topic {name}")
    for group in readers:  # the broker started their partitions over (docs/queues.md)
        click.echo(f"queue group {group} starts over on {name} if it is created again", err=True)


def _queue_groups_reading(name: str) -> list[str]:
    """The queue groups that read topic ``name`` (none known when the principal may not
    list queue groups: the broker starts their partitions over either way)."""
    from logstream import errors
    from logstream.client.group_admin import GroupAdmin

    ctx = app()
    admin = GroupAdmin(ctx.broker, **ctx.security)
    ctx.close_later(admin.close)
    try:
        listing = admin.list_queue_groups()
    except (errors.ClusterAuthorizationFailedError, errors.GroupAuthorizationFailedError):
        return []
    return sorted(g.group for g in listing if name in g.topics)


@topic.command(
    epilog="Example: logstream topic alter orders -c retention_ms=3600000 --reset segment_ms"
)
@click.argument("name")
@click.option(
    "--config",
    "-c",
    "config",
    type=params.KEY_VALUE,
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a config key (repeatable).",
)
@click.option("--reset", multiple=True, metavar="KEY", help="Return KEY to the broker default.")
@params.output_option
def alter(
    name: str, config: tuple[tuple[str, str], ...], reset: tuple[str, ...], output: str | None
) -> None:
    """Change the config of topic NAME; prints the resulting config."""
    if not config and not reset:
        raise click.UsageError("nothing to change: give --config KEY=VALUE or --reset KEY")
    result = app().admin().alter_topic_config(name, set=_configs(config), reset=list(reset))
    rows = [{"key": k, "value": v} for k, v in sorted(result.items())]
    emit_rows(rows, ["key", "value"], _output(output))


@topic.command(
    name="add-partitions", epilog="Example: logstream topic add-partitions orders --count 6"
)
@click.argument("name")
@click.option(
    "--count",
    type=click.IntRange(min=1),
    required=True,
    help="The new total number of partitions.",
)
def add_partitions(name: str, count: int) -> None:
    """Grow topic NAME to --count partitions (never shrinks)."""
    app().admin().add_partitions(name, count)
    click.echo(f"topic {name} now has {count} partitions")
