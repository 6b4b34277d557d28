"""``logstream user add | list | remove | rotate``: API tokens in a broker's data directory.

Offline (the default): the command edits ``<data-dir>/security/credentials.json`` directly
(the first token is made this way, before the broker starts); a running broker reads the
file again on SIGHUP. ``--online``: the running broker does it (it needs ``--auth --acls``
and the caller cluster alter / describe), effective at once. A token is printed once, on
stdout, and never stored.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from logstream.cli.options import broker_data_dir_option, offline_data_dir, run_or_exit

ONLINE = click.option(
    "--online", is_flag=True, help="Ask the running broker (--broker, --token) instead."
)


def _store(data_dir: Path) -> Any:
    from logstream.broker.security.credentials import CredentialStore

    return CredentialStore(data_dir)


EXAMPLES = """\b
Examples:
  logstream user add admin --data-dir ./data      # prints the token once
  export LOGSTREAM_TOKEN=ls1.admin....; logstream topic list
  logstream user rotate admin --data-dir ./data   # a new token; the old one stops working
  logstream user list --data-dir ./data
  logstream user remove admin --data-dir ./data
  kill -HUP <broker pid>                          # a running broker re-reads the users
  logstream --token "$ADMIN_TOKEN" user add bob --online   # through the broker, at once
"""


@click.group(epilog=EXAMPLES)
def user() -> None:
    """Users and their API tokens (see docs/security.md)."""


def _admin() -> Any:
    from logstream.cli.context import app

    return app().admin()


@user.command(epilog=EXAMPLES)
@click.argument("name")
@broker_data_dir_option
@ONLINE
def add(name: str, data_dir: Path, online: bool) -> None:
    """Create user NAME and print its token (shown only this once)."""
    if online:
        click.echo(_admin().create_user(name))
    else:
        click.echo(run_or_exit(lambda: _store(offline_data_dir(data_dir, create=True)).add(name)))


@user.command(epilog=EXAMPLES)
@click.argument("name")
@broker_data_dir_option
@ONLINE
def rotate(name: str, data_dir: Path, online: bool) -> None:
    """Give NAME a new token (printed once); the old one stops working."""
    if online:
        click.echo(_admin().create_user(name, rotate=True))
    else:
        click.echo(run_or_exit(lambda: _store(offline_data_dir(data_dir)).add(name, replace=True)))


@user.command(epilog=EXAMPLES)
@click.argument("name")
@broker_data_dir_option
@ONLINE
def remove(name: str, data_dir: Path, online: bool) -> None:
    """Delete user NAME: its token stops working."""
    if online:
        _admin().delete_user(name)
    else:
        run_or_exit(lambda: _store(offline_data_dir(data_dir)).remove(name))


@user.command("list", epilog=EXAMPLES)
@broker_data_dir_option
@ONLINE
def list_users(data_dir: Path, online: bool) -> None:
    """The users (names and creation times; never tokens or hashes)."""
    if online:
        users = _admin().list_users()
    else:
        users = [
            (r.name, r.created_ms)
            for r in run_or_exit(lambda: _store(offline_data_dir(data_dir)).users())
        ]
    for name, created_ms in users:
        created = dt.datetime.fromtimestamp(created_ms / 1000, dt.UTC)
        click.echo(f"{name}\tcreated {created:%Y-%m-%d %H:%M:%SZ}")
