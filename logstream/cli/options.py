"""Options shared by several commands, declared once, and the typed bundles they parse into.

``tail``, ``consume`` and ``export`` share the range, filter and (for the first two) format
options; each group of options arrives in the command's ``**kwargs`` and is taken out of it
as one frozen dataclass (:meth:`RangeOptions.take`, :meth:`FilterOptions.take`,
:meth:`PrintOptions.take`), so no bag of loose options travels further than the command body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import click

from logstream.cli import params
from logstream.cli.formatting import BINARY_MODES
from logstream.clock import Clock
from logstream.replay import timespec as ts
from logstream.replay.filters import Matcher, RateLimiter, RecordFilter, Sampler
from logstream.replay.session import ReplayRequest

RECORD_OUTPUTS = ("table", "plain", "jsonl", "json")

Command = Callable[..., Any]
Decorator = Callable[[Command], Command]
_Bundle = TypeVar("_Bundle")


def _stack(options: Sequence[Decorator]) -> Decorator:
    """One decorator applying ``options`` in the order written (the first one is on top)."""

    def deco(fn: Command) -> Command:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return deco


def _take(cls: type[_Bundle], kwargs: dict[str, Any], **extra: Any) -> _Bundle:
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    return cls(**{n: kwargs.pop(n) for n in names if n in kwargs}, **extra)


# -- single options -----------------------------------------------------------------------------


def count_option(help: str) -> Decorator:
    return click.option(
        "-c", "--count", "max_records", type=click.IntRange(min=1), default=None, help=help
    )


def group_option(help: str) -> Decorator:
    return click.option("--group", default=None, metavar="G", help=help)


# -- the range ----------------------------------------------------------------------------------

range_options = _stack(
    [
        click.option(
            "--from",
            "start",
            type=params.START,
            default=None,
            help="Where to start: beginning, end, N (offset), -N (N before the end), "
            "+N (N after the start), @TIME.",
        ),
        click.option(
            "--until",
            "stop",
            type=params.STOP,
            default=None,
            help="Where to stop: end (the end when the command started), N (before "
            "offset N), +N (N records per partition), @TIME.",
        ),
        click.option(
            "--since",
            type=params.SINCE,
            default=None,
            help="Shortcut for --from @-DURATION: --since 10m, --since 3d, or a TIME.",
        ),
        click.option(
            "-p",
            "--partition",
            "partitions",
            type=params.PARTITIONS,
            default=None,
            help="Only these partitions: 0,3-5.",
        ),
        click.option(
            "--data-dir",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            default=None,
            help="Read segment files in DIR directly, without a broker (forensics).",
        ),
    ]
)


@dataclass(frozen=True)
class RangeOptions:
    """``--from/--until/--since/-p/--data-dir`` as given."""

    start: ts.StartSpec | None = None
    stop: ts.StopSpec | None = None
    since: ts.Timestamp | None = None
    partitions: Sequence[int] | None = None
    data_dir: Path | None = None

    @classmethod
    def take(cls, kwargs: dict[str, Any]) -> RangeOptions:
        return _take(cls, kwargs)

    def request(
        self,
        topics: Sequence[str],
        *,
        last: int | None = None,
        follow: bool = False,
        group: str | None = None,
        limit: int | None = None,
    ) -> ReplayRequest:
        """The replay these options ask for; a usage error for combinations that do not mix."""
        if self.since is not None and self.start is not None:
            raise click.UsageError("--since and --from do not mix (--since is --from @-DURATION)")
        start = self.since if self.since is not None else self.start
        if last is not None and start is not None:
            raise click.UsageError(
                "-n/--lines picks the last N records; with --from use -c/--count"
            )
        if group is not None and self.data_dir is not None:
            raise click.UsageError("--group needs a broker; it does not work with --data-dir")
        if group is not None and self.partitions is not None:
            raise click.UsageError(
                "--group reads the partitions the group assigns to it; -p does not mix"
            )
        if group is not None and isinstance(self.stop, ts.RecordCount):
            raise click.UsageError("--group does not mix with --until +N (use -c/--count)")
        try:
            ts.check_order(start, self.stop)
        except ts.TimeSpecError as exc:
            raise click.UsageError(str(exc)) from None
        last_n = start is None and group is None
        if last_n and self.stop is not None and not isinstance(self.stop, ts.End):
            raise click.UsageError("without --from, --until can only be 'end'")
        return ReplayRequest(
            topics=tuple(topics),
            start=start,
            stop=self.stop,
            partitions=tuple(self.partitions) if self.partitions is not None else None,
            last=last,
            follow=follow,
            group=group,
            limit=limit,
        )


# -- filters ------------------------------------------------------------------------------------


def _header_filter(value: str) -> tuple[str, str | None]:
    name, sep, v = value.partition("=")
    if not name:
        raise ValueError(f"bad --header {value!r}: expected NAME=VALUE or NAME")
    return name, (v if sep else None)


HEADER_FILTER = params.FnType("NAME[=VALUE]", _header_filter)

filter_options = _stack(
    [
        click.option(
            "--key",
            "keys",
            multiple=True,
            metavar="KEY",
            help="Only records with this key (repeat: any of them).",
        ),
        click.option(
            "--grep",
            default=None,
            metavar="REGEX",
            help="Only records whose value matches REGEX (Python syntax).",
        ),
        click.option(
            "--grep-invert",
            "-v",
            "invert_grep",
            is_flag=True,
            help="With --grep: only records that do NOT match.",
        ),
        click.option(
            "--header",
            "header_filters",
            type=HEADER_FILTER,
            multiple=True,
            help="Only records with header NAME (=VALUE); repeat for AND.",
        ),
        click.option(
            "--sample",
            type=params.SAMPLE,
            default=None,
            help="Keep one record in N (of those matching): 1/100.",
        ),
        click.option(
            "--rate",
            type=params.RATE,
            default=None,
            help="Print at most this many records per second; the rest are skipped "
            "and counted: 50/s.",
        ),
        click.option(
            "--skip-expired",
            is_flag=True,
            help="Leave out records whose logstream-expires-at time (a TTL) has passed.",
        ),
    ]
)


@dataclass(frozen=True)
class FilterOptions:
    """``--key/--grep/-v/--header/--sample/--rate`` as given."""

    keys: Sequence[str] = ()
    grep: str | None = None
    invert_grep: bool = False
    header_filters: Sequence[tuple[str, str | None]] = ()
    sample: int | None = None
    rate: float | None = None
    skip_expired: bool = False

    @classmethod
    def take(cls, kwargs: dict[str, Any]) -> FilterOptions:
        return _take(cls, kwargs)

    def build(self, clock: Clock) -> RecordFilter:
        try:
            matcher = Matcher(
                keys=self.keys,
                grep=self.grep,
                headers=self.header_filters,
                invert_grep=self.invert_grep,
                skip_expired=self.skip_expired,
                clock=clock,
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--grep'") from None
        return RecordFilter(
            matcher=matcher,
            sampler=Sampler(self.sample) if self.sample else None,
            limiter=RateLimiter(self.rate, clock) if self.rate else None,
        )


# -- how records are printed --------------------------------------------------------------------


def output_default_help(tail: bool) -> str:
    what = "the human line" if tail else "the value"
    return (
        f"table ({what}, coloured on a TTY), plain (no colour), jsonl (one JSON object per "
        "record, for jq) or json (one array). Default: table on a TTY, else plain."
    )


def format_options(default_output_help: str) -> Decorator:
    return _stack(
        [
            click.option(
                "-o",
                "--output",
                type=click.Choice(RECORD_OUTPUTS),
                default=None,
                help=default_output_help,
            ),
            click.option(
                "--format",
                "template",
                default=None,
                metavar="TEMPLATE",
                help="Line template: {topic} {partition} {offset} {timestamp} "
                "{timestamp:iso} {key} {value} {header:NAME} {headers}, or kcat's "
                "%t %p %o %T %k %s %h.",
            ),
            click.option(
                "--pretty/--compact",
                default=None,
                help="Indent JSON values (default: on a TTY).",
            ),
            click.option(
                "--binary",
                type=click.Choice(BINARY_MODES),
                default="hex",
                show_default=True,
                help="How to show values that are not UTF-8.",
            ),
            click.option("--utc", is_flag=True, help="Show times in UTC (default: local)."),
            click.option(
                "--color/--no-color",
                "colour",
                default=None,
                help="Colour (default: on a TTY, unless NO_COLOR is set).",
            ),
        ]
    )


@dataclass(frozen=True)
class PrintOptions:
    """How ``tail``/``consume`` print: the format options plus each command's defaults."""

    output: str | None = None
    template: str | None = None
    pretty: bool | None = None
    binary: str = "hex"
    utc: bool = False
    colour: bool | None = None
    status: bool | None = None  # the live status line while following; None: on a TTY
    summary: bool = True  # the "N records shown" line on stderr after following
    default_template: str | None = None  # consume: "{value}"

    @classmethod
    def take(cls, kwargs: dict[str, Any], **defaults: Any) -> PrintOptions:
        return _take(cls, kwargs, **defaults)


# Offline tools that edit files in a stopped (or SIGHUP-reloading) broker's data directory.
broker_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="LOGSTREAM_DATA_DIR",
    default=Path("./logstream-data"),
    help="The broker's data directory.",
)


def run_or_exit(fn: Callable[[], Any]) -> Any:
    """Call ``fn``; a LogstreamError becomes one line on stderr and exit status 1."""
    import sys

    from logstream.errors import LogstreamError

    try:
        return fn()
    except LogstreamError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def offline_data_dir(data_dir: Path, *, create: bool = False) -> Path:
    """``data_dir`` for an offline command (``user``, ``quota`` with ``--data-dir``); one
    ``error:`` line and exit 1 when it is not a logstream data directory: missing, or
    holding other things (a mistyped path must not be read as a broker with no users, nor be
    made into one). With ``create`` (``user add``, ``quota set``: the first token before the
    broker first starts) a missing or empty directory is accepted, and a missing one said so
    on stderr, so a typo shows at once."""
    import sys

    from logstream.broker.security.credentials import SECURITY_DIR
    from logstream.storage.files import LOCK_FILE, META_DIR

    def refuse(message: str) -> None:
        click.echo(f"error: {message}", err=True)
        sys.exit(1)

    if data_dir.exists() and not data_dir.is_dir():
        refuse(f"{data_dir} is a file, not a data directory (the broker's --data-dir)")
    if not data_dir.exists():
        if not create:
            refuse(f"no data directory at {data_dir} (the broker's --data-dir)")
        above = next((p for p in data_dir.parents if p.exists()), None)
        if above is not None and not above.is_dir():
            refuse(f"cannot make a data directory at {data_dir}: {above} is a file")
        click.echo(f"note: no data directory at {data_dir} yet: starting a new one", err=True)
        return data_dir
    if any((data_dir / mark).exists() for mark in (LOCK_FILE, META_DIR, SECURITY_DIR)):
        return data_dir
    if create and not any(data_dir.iterdir()):
        return data_dir
    refuse(
        f"{data_dir} is not a logstream data directory (no {LOCK_FILE}, {META_DIR}/ or "
        f"{SECURITY_DIR}/ in it; the broker's --data-dir)"
    )
    return data_dir
