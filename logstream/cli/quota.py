"""``logstream quota set | get | list``: per-principal rate quotas.

Offline (the default), like ``logstream user``: edits ``<data-dir>/security/quotas.json``;
a running broker reads it again on SIGHUP. ``--online``: the running broker changes it and
applies it at once (it needs ``--auth --acls`` and the caller cluster alter / describe).
``*`` is the default for principals without their own quota; 0 means unlimited. Quotas
apply to authenticated principals (``--auth`` or mTLS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from logstream.cli.options import broker_data_dir_option, offline_data_dir, run_or_exit

EXAMPLES = """\\b
Examples:
  logstream quota set alice --produce-bytes-per-s 1048576 --data-dir ./data
  logstream quota set '*' --requests-per-s 1000 --data-dir ./data   # everyone else
  logstream quota set alice --produce-bytes-per-s 0 --data-dir ./data   # unlimited again
  logstream quota list --data-dir ./data
  kill -HUP <broker pid>                                          # a running broker re-reads
  logstream --token "$ADMIN_TOKEN" quota set alice --requests-per-s 50 --online   # at once
  logstream --token "$ADMIN_TOKEN" quota get alice --online
"""

ONLINE = click.option(
    "--online", is_flag=True, help="Ask the running broker (--broker, --token) instead."
)


def _admin() -> Any:
    from logstream.cli.context import app

    return app().admin()


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
@ONLINE
def set(
    principal: str,
    produce_bytes_per_s: float | None,
    fetch_bytes_per_s: float | None,
    requests_per_s: float | None,
    data_dir: Path,
    online: bool,
) -> None:
    """Set PRINCIPAL's quotas (options left out keep their value; all 0 removes it)."""
    from dataclasses import asdict, replace

    from logstream.broker.security.quotas import Quota

    given = {
        "produce_bytes_per_s": produce_bytes_per_s,
        "fetch_bytes_per_s": fetch_bytes_per_s,
        "requests_per_s": requests_per_s,
    }
    if online:
        click.echo(_line(principal, _admin().set_quota(principal, **given)))
        return
    changes = {k: v for k, v in given.items() if v is not None}

    def update() -> Any:
        f = _file(offline_data_dir(data_dir, create=True))
        quotas = f.read()
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
    def show(v: float, unit: str) -> str:
        # every digit of the rate as given (1048576, not {:g}'s 1.04858e+06), no unit for none
        return "unlimited" if not v else f"{v:.15g}{unit}"

    return (
        f"{principal}\tproduce {show(q.produce_bytes_per_s, ' B/s')}\t"
        f"fetch {show(q.fetch_bytes_per_s, ' B/s')}\trequests {show(q.requests_per_s, '/s')}"
    )


def _quotas(data_dir: Path, online: bool, principal: str = "") -> list[tuple[str, Any]]:
    if online:
        return [(q.principal, q) for q in _admin().list_quotas(principal)]
    found = sorted(run_or_exit(lambda: _file(offline_data_dir(data_dir)).read()).items())
    return [(p, q) for p, q in found if not principal or p == principal]


@quota.command(epilog=EXAMPLES)
@click.argument("principal")
@broker_data_dir_option
@ONLINE
def get(principal: str, data_dir: Path, online: bool) -> None:
    """PRINCIPAL's own quotas (unlimited when it has none; ``*`` may still apply)."""
    from logstream.broker.security.quotas import Quota

    found = _quotas(data_dir, online, principal)
    click.echo(_line(principal, found[0][1] if found else Quota()))


@quota.command("list", epilog=EXAMPLES)
@broker_data_dir_option
@ONLINE
def list_quotas(data_dir: Path, online: bool) -> None:
    """Every principal's quotas."""
    for principal, q in _quotas(data_dir, online):
        click.echo(_line(principal, q))
