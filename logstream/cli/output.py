"""Output for people and for pipes: tables, JSON documents, JSON lines, plain text, and the
live status line on stderr.

``emit_rows`` is the one function commands use for tabular results (``topic list``,
``topic describe``, ``offsets``): ``table`` (aligned, coloured header on a TTY; one block
per row when that is wider than the terminal), ``plain``
(tab-separated, no header: for ``cut``/``awk``), ``json`` (one array) or ``jsonl`` (one object
per line).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

import click

from logstream.cli.params import is_tty, use_colour


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    return str(value)


def render_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    colour: bool = False,
    width: int | None = None,
) -> str:
    """Aligned columns with an upper-case header; numbers right-aligned. When the table is
    wider than ``width`` (a terminal's columns), each row becomes a block of ``COLUMN value``
    lines instead (psql's expanded display): wrapped or cut columns would be unreadable."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    if width is not None and rows and sum(widths) + 2 * (len(widths) - 1) > width:
        return _render_blocks(cells, columns, colour)
    numeric = [bool(rows) and all(isinstance(r.get(c), int | float) for r in rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    head = line([c.upper() for c in columns])
    if colour:
        head = click.style(head, bold=True)
    return "\n".join([head, *(line(row) for row in cells)]) + "\n"


def _render_blocks(cells: Sequence[Sequence[str]], columns: Sequence[str], colour: bool) -> str:
    """One block per row, ``COLUMN  value`` per line, a blank line between blocks."""
    pad = max(len(c) for c in columns)
    names = [c.upper().ljust(pad) for c in columns]
    if colour:
        names = [click.style(n, bold=True) for n in names]
    blocks = [
        "\n".join(f"{n}  {v}".rstrip() for n, v in zip(names, row, strict=True)) for row in cells
    ]
    return "\n\n".join(blocks) + "\n"


def table_width(stream: IO[str]) -> int | None:
    """The terminal's columns when ``stream`` is one (``COLUMNS`` wins, as for every
    terminal program); None for a pipe or a file, where tables keep their full width."""
    if not is_tty(stream):
        return None
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def emit_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    output: str,
    *,
    stream: IO[str] | None = None,
    colour: bool | None = None,
) -> None:
    out = stream or sys.stdout
    if output == "json":
        click.echo(json.dumps(list(rows), indent=2, ensure_ascii=False), file=out)
    elif output == "jsonl":
        for r in rows:
            click.echo(json.dumps(r, ensure_ascii=False), file=out)
    elif output == "plain":
        for r in rows:
            click.echo("\t".join(_cell(r.get(c)) for c in columns), file=out)
    else:
        table = render_table(rows, columns, colour=use_colour(out, colour), width=table_width(out))
        click.echo(table, nl=False, file=out)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_count(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.1f}k"
    return f"{n:.0f}"


class StatusLine:
    """A one-line live status on stderr (a TTY only), redrawn at most every ``interval`` s.

    When stdout is the same terminal, :meth:`clear` must be called before writing a record to
    stdout (:class:`RecordWriter` does it), so the status never mixes into record lines.
    """

    def __init__(
        self, stream: IO[str] | None = None, *, enabled: bool | None = None, interval: float = 0.5
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = is_tty(self.stream) if enabled is None else enabled
        self.interval = interval
        self._shown = False
        self._last = 0.0
        self._text = ""

    def update(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval and text == self._text:
            return
        if not force and now - self._last < self.interval:
            self._text = text
            return
        self._text = text
        self._last = now
        width = _terminal_width()
        self.stream.write("\r\x1b[2K" + click.style(text[: width - 1], dim=True))
        self.stream.flush()
        self._shown = True

    @property
    def shown(self) -> bool:
        """True while the status is drawn on the terminal."""
        return self._shown

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown = False

    def redraw(self) -> None:
        if self.enabled and self._text and not self._shown:
            self.update(self._text, force=True)


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


class RecordWriter:
    """Writes formatted records to stdout, coordinating with a status line."""

    def __init__(self, stream: IO[str] | None = None, status: StatusLine | None = None) -> None:
        self.stream = stream or sys.stdout
        self.status = status
        self.count = 0
        self.bytes = 0

    def write(self, text: str) -> None:
        if self.status is not None and self.status.shown:
            self.status.clear()
        self.stream.write(text)
        self.count += 1
        self.bytes += len(text)

    def flush(self) -> None:
        self.stream.flush()
