"""``logstream produce``: one record per line of stdin or a file (see docs/cli.md)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import click

from logstream.cli import params
from logstream.cli.context import app
from logstream.cli.output import StatusLine, human_bytes, human_count
from logstream.codec import MAX_DELAY_MS
from logstream.errors import LogstreamError

ACKS_ALIASES = {"all": "flushed", "-1": "flushed", "1": "leader", "0": "none"}
"""Kafka's acks values, accepted as the logstream modes closest to them (docs/cli.md)."""

INTERRUPT_FLUSH_S = 5.0
"""After Ctrl-C, how long records already sent may take to be acknowledged."""

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


@dataclass(frozen=True)
class RecordShape:
    """How a line becomes a record: the fixed key, or a separator splitting key from value;
    the headers and the partition of every record."""

    key: bytes | None = None
    separator: bytes | None = None
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None
    delay_ms: int | None = None  # queue groups hand the record out this much later
    ttl_ms: int | None = None  # queue groups never hand it out after this (from the send)

    def split(self, line: bytes) -> tuple[bytes | None, bytes]:
        if self.separator is not None:
            before, found, after = line.partition(self.separator)
            if found:
                return before, after
        return self.key, line


class _Sender:
    """Sends records and settles their futures: the first one at once (a bad topic fails
    before the rest is read), later ones when more than 10,000 are in flight (down to 2,000)."""

    IN_FLIGHT = 10_000
    KEEP = 2_000

    def __init__(self, producer: Any, topic: str, shape: RecordShape) -> None:
        self.producer = producer
        self.topic = topic
        self.shape = shape
        self.summary = Summary()
        self.pending: deque[Any] = deque()

    def send(self, line: bytes) -> None:
        key, value = self.shape.split(line)
        fut = self.producer.send(
            self.topic,
            value=value,
            key=key,
            headers=self.shape.headers,
            partition=self.shape.partition,
            delay_ms=self.shape.delay_ms,
            ttl_ms=self.shape.ttl_ms,
        )
        self.summary.records += 1
        self.summary.bytes += len(line)
        if fut.done() and fut.exception() is not None:
            # Refused before sending (no such topic or partition, too large): every further
            # line would fail the same way.
            fut.result()
        self.pending.append(fut)
        if self.summary.records == 1 or len(self.pending) > self.IN_FLIGHT:
            self.settle(everything=self.summary.records > 1)

    def settle(self, *, everything: bool) -> None:
        keep = 0 if everything else self.KEEP
        while len(self.pending) > keep:
            meta = self.pending[0].result()
            self.pending.popleft()  # only once counted: a Ctrl-C in result() keeps it pending
            self.summary.acked += 1
            if meta.offset >= 0:
                self.summary.add(meta.partition, meta.offset)

    def count_stored(self) -> None:
        """Add the pending records (all finished) that the broker acknowledged."""
        for fut in self.pending:
            if fut.done() and fut.exception() is None:
                meta = fut.result()
                self.summary.acked += 1
                if meta.offset >= 0:
                    self.summary.add(meta.partition, meta.offset)
        self.pending.clear()


def _check_options(
    file: str | None, messages: tuple[str, ...], key: str | None, key_separator: str | None
) -> None:
    if file and messages:
        raise click.UsageError("--file and -m/--message do not mix")
    if key is not None and key_separator is not None:
        raise click.UsageError("--key and --key-separator do not mix")
    if key_separator == "":
        raise click.BadParameter("must not be empty", param_hint="'--key-separator'")


def _send_lines(
    sender: _Sender, file: str | None, status: StatusLine, started: float, show: bool
) -> None:
    """Every non-empty line of FILE or stdin, with the progress on the status line."""
    total_bytes = os.path.getsize(file) if file else None
    stream = open(file, "rb") if file else sys.stdin.buffer  # noqa: SIM115
    try:
        read = 0
        for line in _lines(stream):
            sender.send(line)
            read += len(line) + 1
            if show and sender.summary.records % 512 == 0:
                status.update(_progress(sender.summary, started, read, total_bytes))
    finally:
        if file:
            stream.close()


def _print_summary(
    summary: Summary, topic: str, elapsed: float, output: str, *, interrupted: bool = False
) -> None:
    """The summary on stdout: records (the acknowledged ones if interrupted) and offsets."""
    count = summary.acked if interrupted else summary.records
    if output == "json":
        partitions = {
            str(p): {"first_offset": a, "last_offset": b}
            for p, (a, b) in sorted(summary.offsets.items())
        }
        doc: dict[str, Any] = {
            "topic": topic,
            "records": count,
            "bytes": summary.bytes,
            "seconds": round(elapsed, 3),
            "partitions": partitions,
        }
        if interrupted:
            doc["interrupted"] = True
            doc["records_read"] = summary.records
        click.echo(json.dumps(doc))
        return
    if interrupted:
        click.echo(
            f"interrupted: {count} of {summary.records} records read were stored in {topic} "
            f"({elapsed:.2f}s)"
        )
    else:
        click.echo(
            f"produced {count} records ({human_bytes(summary.bytes)}) to {topic} "
            f"in {elapsed:.2f}s ({human_count(count / elapsed)} rec/s)"
        )
    for p, (a, b) in sorted(summary.offsets.items()):
        click.echo(f"  partition {p}: offsets {a}-{b}")


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
@params.header_option("A header for every record (repeatable).")
@click.option(
    "--delay-ms",
    type=click.IntRange(min=0, max=MAX_DELAY_MS),
    default=None,
    help="Queue groups hand each record out this many ms after it is sent (up to 7 days).",
)
@click.option(
    "--ttl-ms",
    type=click.IntRange(min=1),
    default=None,
    help="Each record expires this many ms after it is sent (queue groups never hand it out "
    "after that).",
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
    type=click.Choice(["none", "leader", "flushed", *ACKS_ALIASES]),
    default="leader",
    help="none: do not wait; leader: in the broker's page cache; flushed: fsynced. "
    "Kafka's 0, 1 and all (or -1) mean none, leader and flushed.",
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
    delay_ms: int | None,
    ttl_ms: int | None,
    partition: int | None,
    acks: str,
    linger_ms: float,
    compression: str,
    progress: bool | None,
    output: str,
    quiet: bool,
) -> None:
    """Append records to TOPIC: one per line of stdin (or --file, or -m)."""
    _check_options(file, messages, key, key_separator)
    stderr = sys.stderr
    show = params.is_tty(stderr) if progress is None else progress
    if not file and not messages and params.is_tty(sys.stdin) and show:
        click.echo("reading records from the terminal, one per line; Ctrl-D to finish", err=True)
    shape = RecordShape(
        key=key.encode("utf-8") if key is not None else None,
        separator=key_separator.encode("utf-8") if key_separator is not None else None,
        headers=[(k, v.encode("utf-8")) for k, v in headers] or None,
        partition=partition,
        delay_ms=delay_ms,
        ttl_ms=ttl_ms,
    )
    producer = app().producer(
        acks=ACKS_ALIASES.get(acks, acks),
        linger_ms=linger_ms,
        compression=None if compression == "none" else compression,
    )
    sender = _Sender(producer, topic, shape)
    started = time.monotonic()
    status = StatusLine(stderr, enabled=show, interval=0.2)
    try:
        if messages:
            for m in messages:
                sender.send(m.encode("utf-8"))
        else:
            _send_lines(sender, file, status, started, show)
        producer.flush()
        sender.settle(everything=True)
    except KeyboardInterrupt:
        # Say what was stored before the interrupt, then let the CLI exit 130 as usual.
        status.clear()
        producer.close(INTERRUPT_FLUSH_S)
        sender.count_stored()
        if not quiet:
            elapsed = max(time.monotonic() - started, 1e-9)
            _print_summary(sender.summary, topic, elapsed, output, interrupted=True)
        raise
    except LogstreamError as exc:
        summary = sender.summary
        if summary.records > 1:
            msg = f"{exc} ({summary.acked} of {summary.records} records acknowledged)"
            raise LogstreamError(msg) from exc
        raise
    finally:
        status.clear()
        producer.close()
    if not quiet:
        elapsed = max(time.monotonic() - started, 1e-9)
        _print_summary(sender.summary, topic, elapsed, output)


def _progress(summary: Summary, started: float, read: int, total: int | None) -> str:
    elapsed = max(time.monotonic() - started, 1e-9)
    text = f"{human_count(summary.records)} records, {human_count(summary.records / elapsed)} rec/s"
    if total:
        frac = min(read / total, 1.0)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        text = f"[{bar}] {frac * 100:5.1f}%  {text}"
    return text
