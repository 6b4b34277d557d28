"""``logstream verify DATA_DIR``: check every stored batch offline and list the damage.

A thin face over ``logstream.storage.verify``: it opens the directory read-only (no lock,
no byte written: it can run next to a live broker), reads every partition end to end as a
broker would serve it, and prints one line per damaged offset range, then a one-line
summary. ``-o json`` prints one JSON document instead (for scripts).

A torn tail (bytes after the last good batch of a crashed or live writer, with no good
batch after them) is listed as a note and does not count as damage.

Exit status: 0 nothing damaged, 1 damage found, 2 usage or I/O error (the directory
cannot be read, an unknown ``--topic``).

Progress goes to stderr while the scan runs: a ``rich`` bar on a terminal, a plain line at
most every few seconds when stderr is a pipe or a file (none for a scan shorter than
that), nothing with ``--quiet``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from logstream.cli.lazy_group import FatalError

EXAMPLES = """\\b
Examples:
  logstream verify ./data                       every topic; exit 1 if anything is damaged
  logstream verify ./data --topic orders        one topic
  logstream verify ./data -o json | jq '.damage[]'
"""

PLAIN_PROGRESS_EVERY_S = 2.0
"""A plain progress line at most this often (stderr not a terminal)."""


class VerifyError(FatalError):
    """The scan could not run (exit 2, so a script can tell it from damage found)."""

    exit_code = 2


class _PlainProgress:
    """One line on stderr at most every PLAIN_PROGRESS_EVERY_S seconds."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.next_at = time.monotonic() + PLAIN_PROGRESS_EVERY_S

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now >= self.next_at:
            self.next_at = now + PLAIN_PROGRESS_EVERY_S
            click.echo(
                f"verify: {100 * self.done // self.total}% ({_mib(self.done)} of "
                f"{_mib(self.total)})",
                err=True,
            )


def _mib(n: int) -> str:
    if n < 1 << 20:
        return f"{n / 1024:,.1f} KiB"
    return f"{n / (1 << 20):,.1f} MiB"


def _summary(report: Any, seconds: float) -> str:
    damage = report.damage
    parts = len(report.partitions)
    topics = len({p.topic for p in report.partitions})
    scanned = (
        f"{topics} topic{'s' * (topics != 1)}, {parts} partition{'s' * (parts != 1)}, "
        f"{report.offsets:,} offsets, {_mib(report.size_bytes)} in {seconds:.1f} s"
    )
    if not damage:
        return f"clean: {scanned}"
    where = len({(d.topic, d.partition) for d in damage})
    return (
        f"damaged: {len(damage)} range{'s' * (len(damage) != 1)} in {where} "
        f"partition{'s' * (where != 1)} (or metadata files); {scanned}"
    )


@click.command(epilog=EXAMPLES)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--topic", "-t", "topics", multiple=True, metavar="T", help="Only this topic (repeatable)."
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    help="text: one line per damaged range and a summary; json: one document.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also show storage's log lines (index rebuilds, damage found).",
)
def verify(
    data_dir: Path, topics: tuple[str, ...], output: str, quiet: bool, verbose: bool
) -> None:
    """Check every batch in DATA_DIR (CRC, offsets, lengths) without changing a byte.

    Lists each damaged offset range as `TOPIC PARTITION FIRST..LAST: WHY` (LAST `?`: up to
    the next segment). Exit 0 clean, 1 damage found, 2 usage or I/O error."""
    from logstream.errors import LogstreamError

    storage_log = logging.getLogger("logstream.storage")
    level = storage_log.level
    if not verbose:  # each finding is one line of the report instead
        storage_log.setLevel(logging.CRITICAL)
    t0 = time.monotonic()
    try:
        report = _scan(data_dir, topics, quiet)
    except LogstreamError as exc:
        raise VerifyError(str(exc) or exc.name) from exc
    finally:
        storage_log.setLevel(level)  # embedded callers (CliRunner) keep their logging
    seconds = time.monotonic() - t0
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "data_dir": str(data_dir),
                    "clean": not report.damage,
                    "partitions": len(report.partitions),
                    "offsets": report.offsets,
                    "bytes": report.size_bytes,
                    "seconds": round(seconds, 3),
                    "damage": [d.as_dict() for d in report.damage],
                    "torn_tails": [
                        {
                            "topic": p.topic,
                            "partition": p.partition,
                            "after_offset": p.log_end_offset,
                            "bytes": p.unread_tail_bytes,
                        }
                        for p in report.partitions
                        if p.unread_tail_bytes
                    ],
                },
                indent=2,
            )
        )
    else:
        for d in report.damage:
            click.echo(str(d))
        for p in report.partitions:
            note = p.tail_note()
            if note is not None:
                click.echo(note)
        click.echo(_summary(report, seconds))
    click.get_current_context().exit(1 if report.damage else 0)


def _scan(data_dir: Path, topics: tuple[str, ...], quiet: bool) -> Any:
    from logstream.storage.snapshot import DirectorySnapshot
    from logstream.storage.verify import verify_snapshot

    with DirectorySnapshot.open(data_dir) as snap:
        for name in topics:
            snap.topic(name)  # an unknown name fails before the scan
        logs = (
            snap.all_logs()
            if not topics
            else [p for name in topics for p in snap.topic(name).partitions]
        )
        total = sum(p.size_bytes for p in logs)
        if quiet:
            return verify_snapshot(snap, topics=topics or None)
        if sys.stderr.isatty():
            return _with_rich_bar(snap, topics, total)
        return verify_snapshot(snap, topics=topics or None, progress=_PlainProgress(total))


def _with_rich_bar(snap: Any, topics: tuple[str, ...], total: int) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from logstream.storage.verify import verify_snapshot

    columns = (TextColumn("verify"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("verify", total=total)
        return verify_snapshot(snap, topics=topics or None, progress=lambda n: bar.advance(task, n))
