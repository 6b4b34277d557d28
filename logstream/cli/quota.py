"""``logstream quota set | list``: per-principal rate quotas in a broker's data directory.

Offline like ``logstream user``: edits ``<data-dir>/security/quotas.json``; a running
broker reads it again on SIGHUP. ``*`` is the default for principals without their own
quota; 0 means unlimited. Quotas apply to authenticated principals (``--auth`` or mTLS).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

EXAMPLES = """\\b
Examples:
  logstream quota set alice --produce-bytes-per-s 1048576 --data-dir ./data
  logstream quota set '*' --requests-per-s 1000 --data-dir ./data   # everyone else
  logstream quota set alice --produce-bytes-per-s 0 --data-dir ./data   # unlimited again
  logstream quota list --data-dir ./data
  kill -HUP <broker pid>                                          # a running broker re-reads
"""

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="LOGSTREAM_DATA_DIR",
    default=Path("./logstream-data"),
    help="The broker's data directory.",
)


def _file(data_dir: Path) -> Any:
    from logstream.broker.security.quotas import QuotaFile

    return QuotaFile(data_dir)


def _run(fn: Any) -> Any:
    from logstream.errors import LogstreamError

    try:
        return fn()
    except LogstreamError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@click.group(epilog=EXAMPLES)
def quota() -> None:
    """Per-principal produce/fetch byte rates and request rates (see docs/security.md)."""


@quota.command(epilog=EXAMPLES)
@click.argument("principal")
@click.option("--produce-bytes-per-s", type=click.FloatRange(min=0), default=None)
@click.option("--fetch-bytes-per-s", type=click.FloatRange(min=0), default=None)
@click.option("--requests-per-s", type=click.FloatRange(min=0), default=None)
@DATA_DIR
def set(
    principal: str,
    produce_bytes_per_s: float | None,
    fetch_bytes_per_s: float | None,
    requests_per_s: float | None,
    data_dir: Path,
) -> None:
    """Set PRINCIPAL's quotas (options left out keep their value; all 0 removes it)."""
    from dataclasses import asdict, replace

    from logstream.broker.security.quotas import Quota

    def update() -> Any:
        f = _file(data_dir)
        quotas = f.read()
        changes = {
            k: v
            for k, v in (
                ("produce_bytes_per_s", produce_bytes_per_s),
                ("fetch_bytes_per_s", fetch_bytes_per_s),
                ("requests_per_s", requests_per_s),
            )
            if v is not None
        }
        new = replace(quotas.get(principal, Quota()), **changes)
        if any(asdict(new).values()):
            quotas[principal] = new
        else:
            quotas.pop(principal, None)
        f.write(quotas)
        return new

    new = _run(update)
    click.echo(_line(principal, new))


def _line(principal: str, q: Any) -> str:
    def show(v: float) -> str:
        return "unlimited" if not v else f"{v:g}"

    return (
        f"{principal}\tproduce {show(q.produce_bytes_per_s)} B/s\t"
        f"fetch {show(q.fetch_bytes_per_s)} B/s\trequests {show(q.requests_per_s)}/s"
    )


@quota.command("list", epilog=EXAMPLES)
@DATA_DIR
def list_quotas(data_dir: Path) -> None:
    """Every principal's quotas."""
    for principal, q in sorted(_run(lambda: _file(data_dir).read()).items()):
        click.echo(_line(principal, q))
