"""The ``logstream group list|describe|reset|delete`` command: consumer-group administration.

Thin: parse, call :class:`~logstream.client.group_admin.GroupAdmin`, format.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from logstream.cli import params
from logstream.cli.context import app
from logstream.cli.output import emit_rows
from logstream.replay.timespec import TimeSpecError, parse_time

_I64_MAX = 2**63 - 1  # offsets and shifts travel as int64


def _output(output: str | None) -> str:
    return output or params.default_output(sys.stdout)


def _admin() -> Any:
    from logstream.client.group_admin import GroupAdmin

    ctx = app()
    admin = GroupAdmin(ctx.broker, **ctx.security)
    ctx.close_later(admin.close)
    return admin


def human_duration(ms: int) -> str:
    """``-`` for -1 (caught up), else the largest two units: 850ms, 12s, 3m05s, 2h10m, 4d03h."""
    if ms < 0:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    s = ms // 1000
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


@click.group(
    epilog="""\b
Examples:
  logstream group list
  logstream group describe billing
  logstream group reset billing --topic orders --to-time -1h          (dry run: the plan)
  logstream group reset billing --topic orders --to-time -1h --execute
  logstream group reset billing --topic orders --shift-by -100 --partitions 0,3 --execute
  logstream group delete billing
"""
)
def group() -> None:
    """List, inspect, reset and delete consumer groups."""


@group.command(name="list", epilog="Example: logstream group list -o json")
@params.output_option
def list_(output: str | None) -> None:
    """Every group with members or committed offsets."""
    rows = [
        {"group": g.group_id, "state": g.state, "members": g.members}
        for g in _admin().list_groups()
    ]
    emit_rows(rows, ["group", "state", "members"], _output(output), colour=app().colour)


@group.command(epilog="Example: logstream group describe billing --members")
@click.argument("group_id", metavar="GROUP")
@click.option("--members", is_flag=True, help="Also list the members and their partitions.")
@params.output_option
def describe(group_id: str, members: bool, output: str | None) -> None:
    """Per partition of GROUP: owner, committed offset, log end, lag and time lag.

    TIME LAG is the age of the record at the committed position: how far behind the group
    is in time ("-" when it has read everything)."""
    d = _admin().describe_group(group_id)
    mode = _output(output)
    rows = [
        {
            "topic": p.topic,
            "partition": p.partition,
            "member": p.member_id or None,  # shown as - (null in JSON)
            "committed": p.committed if p.committed >= 0 else None,
            "end": p.log_end_offset,
            "lag": p.lag,
            "time_lag": human_duration(p.time_lag_ms) if mode == "table" else p.time_lag_ms,
        }
        for p in d.partitions
    ]
    if mode == "table":
        click.echo(
            f"group {d.group_id}: {d.state}, {len(d.members)} members, epoch {d.group_epoch}, "
            f"assignor {d.assignor or '-'}, total lag {d.total_lag}"
        )
    mrows = [
        {
            "member": m.member_id,
            "instance": m.instance_id or None,
            "client": m.client_id or None,
            "epoch": m.member_epoch,
            "topics": list(m.topics),
            "partitions": [f"{t}-{p}" for t, p in m.assignment],
        }
        for m in d.members
    ]
    if members and mode == "json":
        # one document: the partitions and the members together
        doc = {
            "group": d.group_id,
            "state": d.state,
            "epoch": d.group_epoch,
            "assignor": d.assignor or None,
            "total_lag": d.total_lag,
            "partitions": rows,
            "members": mrows,
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    columns = ["topic", "partition", "member", "committed", "end", "lag", "time_lag"]
    emit_rows(rows, columns, mode, colour=app().colour)
    if members and d.members:
        if mode == "table":
            click.echo()
        emit_rows(
            mrows,
            ["member", "instance", "client", "epoch", "topics", "partitions"],
            mode,
            colour=app().colour,
        )


def _partitions(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated partition numbers, got {text!r}", param_hint="--partitions"
        ) from None


@group.command(
    epilog="""\b
Examples:
  logstream group reset billing --topic orders --to-earliest
  logstream group reset billing --topic orders --to-time 2024-05-01T12:00 --execute
  logstream group reset billing --topic orders --to-time -15m --execute
  logstream group reset billing --topic orders --shift-by -500 --execute
"""
)
@click.argument("group_id", metavar="GROUP")
@click.option("--topic", "-t", required=True, help="The topic whose offsets move.")
@click.option("--partitions", "-p", default=None, metavar="P,P,...", help="Only these.")
@click.option("--to-earliest", is_flag=True, help="To the log start.")
@click.option("--to-latest", is_flag=True, help="To the log end (skip everything).")
@click.option(
    "--to-offset", type=click.IntRange(0, _I64_MAX), default=None, metavar="N", help="To offset N."
)
@click.option(
    "--to-time",
    default=None,
    metavar="TIME",
    help="To the first record at or after TIME (ISO-8601, epoch, or -15m / -3d; @ optional).",
)
@click.option(
    "--shift-by",
    type=click.IntRange(-_I64_MAX - 1, _I64_MAX),
    default=None,
    metavar="N",
    help="Move by N (may be < 0).",
)
@click.option("--execute", is_flag=True, help="Apply the plan (without it: a dry run).")
@params.output_option
def reset(
    group_id: str,
    topic: str,
    partitions: str | None,
    to_earliest: bool,
    to_latest: bool,
    to_offset: int | None,
    to_time: str | None,
    shift_by: int | None,
    execute: bool,
    output: str | None,
) -> None:
    """Move GROUP's committed offsets in TOPIC; the group must have no running members.

    Offsets are clamped to what the partition holds. Without --execute nothing changes:
    the plan is printed."""
    target, value = _reset_target(
        to_earliest=to_earliest,
        to_latest=to_latest,
        to_offset=to_offset,
        to_time=to_time,
        shift_by=shift_by,
    )
    admin = _admin()
    before = admin.committed_offsets(group_id)
    plan = admin.reset_offsets(
        group_id, topic, target, value, partitions=_partitions(partitions), execute=execute
    )
    rows = [
        {
            "topic": tp.topic,
            "partition": tp.partition,
            "current": before.get(tp) if before.get(tp, -1) >= 0 else None,
            "new": offset,
        }
        for tp, offset in sorted(plan.items())
    ]
    emit_rows(rows, ["topic", "partition", "current", "new"], _output(output), colour=app().colour)
    if execute:
        click.echo(f"reset {len(plan)} partitions of {topic} for group {group_id}", err=True)
    else:
        click.echo("dry run: nothing changed; add --execute to apply", err=True)


def _reset_target(
    *,
    to_earliest: bool,
    to_latest: bool,
    to_offset: int | None,
    to_time: str | None,
    shift_by: int | None,
) -> tuple[str, int]:
    """The one target given (earliest, latest, offset, timestamp or shift) and its value."""
    chosen = [
        (name, value)
        for name, value in (
            ("earliest", 0 if to_earliest else None),
            ("latest", 0 if to_latest else None),
            ("offset", to_offset),
            ("timestamp", to_time),
            ("shift", shift_by),
        )
        if value is not None
    ]
    if len(chosen) != 1:
        raise click.UsageError(
            "give exactly one of --to-earliest, --to-latest, --to-offset, --to-time, --shift-by"
        )
    target, raw = chosen[0]
    if target == "timestamp":
        ctx = app()
        # a leading @ is allowed, as in offsets --at: tail and consume write --from @-1h
        text = str(raw).removeprefix("@")
        try:
            return target, parse_time(text, now_ms=ctx.clock.now_ms(), tz=ctx.tz)
        except TimeSpecError as exc:
            raise click.BadParameter(str(exc), param_hint="--to-time") from None
    value = int(raw)  # type: ignore[arg-type]
    if target == "offset" and value < 0:
        raise click.BadParameter("must be >= 0", param_hint="--to-offset")
    return target, value


@group.command(epilog="Example: logstream group delete billing")
@click.argument("group_id", metavar="GROUP")
def delete(group_id: str) -> None:
    """Delete GROUP and its committed offsets (it must have no running members)."""
    _admin().delete_group(group_id)
    click.echo(f"deleted group {group_id}")
