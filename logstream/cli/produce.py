"""``logstream produce``: one record per line of stdin or a file (see docs/cli.md)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import click

from logstream.cli import params
from logstream.cli.context import app
from logstream.cli.output import StatusLine, human_bytes, human_count
from logstream.errors import LogstreamError

EPILOG = """\b
Examples:
  echo hello | logstream produce orders
  seq 1000 | logstream produce orders --acks flushed
  logstream produce orders --file events.txt --key-separator ':'   "user-1:{...}" -> key, value
  logstream produce orders -m '{"id": 1}' -m '{"id": 2}' --header source=cli
  logstream produce orders --partition 2 < lines.txt
Empty lines are skipped. The summary (records, bytes, offsets per partition) goes to stdout.
"""


@dataclass
class Summary:
    records: int = 0
    bytes: int = 0
    acked: int = 0
    offsets: dict[int, list[int]] = field(default_factory=dict)  # partition -> [first, last]

    def add(self, partition: int, offset: int) -> None:
        span = self.offsets.get(partition)
        if span is None:
            self.offsets[partition] = [offset, offset]
        else:
            span[0] = min(span[0], offset)
            span[1] = max(span[1], offset)


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    for raw in stream:
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if line.endswith(b"\r"):
            line = line[:-1]
        if line:
            yield line


@click.command(epilog=EPILOG)
@click.argument("topic")
@click.option(
    "--file",
    "-f",
    "file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Read records from FILE instead of stdin.",
)
@click.option(
    "-m",
    "--message",
    "messages",
    multiple=True,
    help="A record value (repeatable); no stdin.",
)
@click.option(
    "--key-separator",
    "-K",
    default=None,
    metavar="SEP",
    help="Split each line at the first SEP into key and value (no SEP: no key).",
)
@click.option("--key", "-k", default=None, help="The key for every record.")
@click.option(
    "--header",
    "-H",
    "headers",
    type=params.KEY_VALUE,
    multiple=True,
    metavar="NAME=VALUE",
    help="A header for every record (repeatable).",
)
@click.option(
    "--partition",
    "-p",
    type=click.IntRange(min=0),
    default=None,
    help="Write to this partition (default: by key hash; keyless records stick to one).",
)
@click.option(
    "--acks",
    type=click.Choice(["none", "leader", "flushed"]),
    default="leader",
    help="none: do not wait; leader: in the broker's page cache; flushed: fsynced.",
)
@click.option("--linger-ms", type=click.FloatRange(min=0), default=5.0, help="Batching delay.")
@click.option(
    "--compression",
    type=click.Choice(["none", "zstd", "lz4"]),
    default="none",
    help="Batch compression.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress on stderr (default: when stderr is a TTY).",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["plain", "json"]),
    default="plain",
    help="Summary format.",
)
@click.option("-q", "--quiet", is_flag=True, help="No summary.")
def produce(
    topic: str,
    file: str | None,
    messages: tuple[str, ...],
    key_separator: str | None,
    key: str | None,
    headers: tuple[tuple[str, str], ...],
    partition: int | None,
    acks: str,
    linger_ms: float,
    compression: str,
    progress: bool | None,
    output: str,
    quiet: bool,
) -> None:
    """Append records to TOPIC: one per line of stdin (or --file, or -m)."""
    if file and messages:
        raise click.UsageError("--file and -m/--message do not mix")
    if key is not None and key_separator is not None:
        raise click.UsageError("--key and --key-separator do not mix")
    if key_separator == "":
        raise click.BadParameter("must not be empty", param_hint="'--key-separator'")
    stderr = sys.stderr
    show = params.is_tty(stderr) if progress is None else progress
    if not file and not messages and params.is_tty(sys.stdin) and show:
        click.echo("reading records from the terminal, one per line; Ctrl-D to finish", err=True)

    hdrs = [(k, v.encode("utf-8")) for k, v in headers] or None
    sep = key_separator.encode("utf-8") if key_separator is not None else None
    fixed_key = key.encode("utf-8") if key is not None else None
    total_bytes = os.path.getsize(file) if file else None

    producer = app().producer(
        acks=acks, linger_ms=linger_ms, compression=None if compression == "none" else compression
    )
    summary = Summary()
    pending: list[Any] = []
    started = time.monotonic()

    def settle(all_: bool) -> None:
        keep = 0 if all_ else 2000
        while len(pending) > keep:
            fut = pending.pop(0)
            meta = fut.result()
            summary.acked += 1
            if meta.offset >= 0:
                summary.add(meta.partition, meta.offset)

    def send(line: bytes) -> None:
        k = fixed_key
        v = line
        if sep is not None:
            before, found, after = line.partition(sep)
            if found:
                k, v = before, after
        pending.append(producer.send(topic, value=v, key=k, headers=hdrs, partition=partition))
        summary.records += 1
        summary.bytes += len(line)
        if summary.records == 1 or len(pending) > 10_000:
            settle(summary.records > 1)

    status = StatusLine(stderr, enabled=show, interval=0.2)
    try:
        if messages:
            for m in messages:
                send(m.encode("utf-8"))
        else:
            stream = open(file, "rb") if file else sys.stdin.buffer  # noqa: SIM115
            try:
                read = 0
                for line in _lines(stream):
                    send(line)
                    read += len(line) + 1
                    if show and summary.records % 512 == 0:
                        status.update(_progress(summary, started, read, total_bytes))
            finally:
                if file:
                    stream.close()
        producer.flush()
        settle(True)
    except LogstreamError as exc:
        if summary.records > 1:
            msg = f"{exc} ({summary.acked} of {summary.records} records acknowledged)"
            raise LogstreamError(msg) from exc
        raise
    finally:
        status.clear()
        producer.close()
    if quiet:
        return
    elapsed = max(time.monotonic() - started, 1e-9)
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "topic": topic,
                    "records": summary.records,
                    "bytes": summary.bytes,
                    "seconds": round(elapsed, 3),
                    "partitions": {
                        str(p): {"first_offset": a, "last_offset": b}
                        for p, (a, b) in sorted(summary.offsets.items())
                    },
                }
            )
        )
        return
    rate = summary.records / elapsed
    click.echo(
        f"produced {summary.records} records ({human_bytes(summary.bytes)}) to {topic} "
        f"in {elapsed:.2f}s ({human_count(rate)} rec/s)"
    )
    for p, (a, b) in sorted(summary.offsets.items()):
        click.echo(f"  partition {p}: offsets {a}-{b}")


def _progress(summary: Summary, started: float, read: int, total: int | None) -> str:
    elapsed = max(time.monotonic() - started, 1e-9)
    text = f"{human_count(summary.records)} records, {human_count(summary.records / elapsed)} rec/s"
    if total:
        frac = min(read / total, 1.0)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        text = f"[{bar}] {frac * 100:5.1f}%  {text}"
    return text
