"""``logstream quota set | list``: per-principal rate quotas in a broker's data directory.

Offline like ``logstream user``: edits ``<data-dir>/security/quotas.json``; a running
broker reads it again on SIGHUP. ``*`` is the default for principals without their own
quota; 0 means unlimited. Quotas apply to authenticated principals (``--auth`` or mTLS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from logstream.cli.options import broker_data_dir_option, run_or_exit

EXAMPLES = """\\b
Examples:
  logstream quota set alice --produce-bytes-per-s 1048576 --data-dir ./data
  logstream quota set '*' --requests-per-s 1000 --data-dir ./data   # everyone else
  logstream quota set alice --produce-bytes-per-s 0 --data-dir ./data   # unlimited again
  logstream quota list --data-dir ./data
  kill -HUP <broker pid>                                          # a running broker re-reads
"""

def _file(data_dir: Path) -> Any:
    from logstream.broker.security.quotas import QuotaFile

    return QuotaFile(data_dir)


@click.group(epilog=EXAMPLES)
def quota() -> None:
    """Per-principal produce/fetch byte rates and request rates (see docs/security.md)."""


@quota.command(epilog=EXAMPLES)
@click.argument("principal")
@click.option("--produce-bytes-per-s", type=click.FloatRange(min=0), default=None)
@click.option("--fetch-bytes-per-s", type=click.FloatRange(min=0), default=None)
@click.option("--requests-per-s", type=click.FloatRange(min=0), default=None)
@broker_data_dir_option
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

    new = run_or_exit(update)
    click.echo(_line(principal, new))


def _line(principal: str, q: Any) -> str:
    def show(v: float) -> str:
        return "unlimited" if not v else f"{v:g}"

    return (
        f"{principal}\tproduce {show(q.produce_bytes_per_s)} B/s\t"
        f"fetch {show(q.fetch_bytes_per_s)} B/s\trequests {show(q.requests_per_s)}/s"
    )


@quota.command("list", epilog=EXAMPLES)
@broker_data_dir_option
def list_quotas(data_dir: Path) -> None:
    """Every principal's quotas."""
    for principal, q in sorted(run_or_exit(lambda: _file(data_dir).read()).items()):
        click.echo(_line(principal, q))
