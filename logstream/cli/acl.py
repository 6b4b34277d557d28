"""``logstream acl add | list | remove``: the broker's access control lists.

Online (the default): the running broker changes its rules (``--broker``, ``--token``; the
caller needs cluster alter / describe), effective at once. ``--data-dir D``: the rules of a
data directory no broker has open are read and written directly (its ``__acls`` topic), so
rules can be in place before the broker first starts; refused while a broker runs on D.

Selectors: ``--principal`` (a user or certificate name, ``*`` for everyone), one of
``--topic NAME`` / ``--group NAME`` / ``--cluster``, ``--prefix`` (NAME is a prefix),
``--operation``, ``--allow`` / ``--deny``. For ``list`` and ``remove`` every selector is a
filter and may be left out (``remove`` needs at least one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from logstream.cli.context import app
from logstream.cli.options import run_or_exit

OPERATIONS = ("read", "write", "create", "delete", "alter", "describe")

EXAMPLES = """\\b
Examples:
  logstream acl add --principal alice --topic orders --operation read --allow
  logstream acl add --principal '*' --topic tmp- --prefix --operation write --allow
  logstream acl add --principal bob --group billing --operation read --allow
  logstream acl add --principal ops --cluster --operation alter --allow
  logstream acl list --principal alice
  logstream acl remove --principal alice --topic orders
  logstream acl add --principal alice --topic orders --operation write --data-dir ./data
"""


def _selectors(fn: Any) -> Any:
    options = [
        click.option("--principal", default="", help="User or certificate name; * = everyone."),
        click.option("--topic", default=None, help="A topic name (or prefix with --prefix)."),
        click.option("--group", "group_id", default=None, help="A consumer group name."),
        click.option("--cluster", is_flag=True, help="The cluster (ACL and topic creation)."),
        click.option("--prefix", is_flag=True, help="NAME is a prefix, not a literal name."),
        click.option("--operation", type=click.Choice(OPERATIONS), default=None),
        click.option("--allow/--deny", "allow", default=None, help="Permission."),
        click.option(
            "--data-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Edit this data directory's rules directly (no broker may run on it).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _binding(
    principal: str,
    topic: str | None,
    group_id: str | None,
    cluster: bool,
    prefix: bool,
    operation: str | None,
    allow: bool | None,
) -> Any:
    from logstream.client import AclBinding

    chosen = [k for k, v in (("topic", topic), ("group", group_id)) if v is not None]
    if cluster:
        chosen.append("cluster")
    if len(chosen) > 1:
        raise click.UsageError("give one of --topic, --group, --cluster")
    rtype = chosen[0] if chosen else ""
    name = topic if topic is not None else group_id or ("cluster" if cluster else "")
    pattern = "prefix" if prefix else ("literal" if rtype and not cluster else "")
    permission = "" if allow is None else ("allow" if allow else "deny")
    return AclBinding(principal, rtype, name or "", pattern, operation or "", permission)


def _offline(data_dir: Path, action: Callable[[Any], Any], *, create: bool = False) -> Any:
    """``action(store)`` on the rules of ``data_dir`` (one line and exit 1 on failure);
    only ``add`` may create the directory (rules before the first start)."""

    def run() -> Any:
        from logstream.broker.security.acl_log import offline_acl_store

        with offline_acl_store(data_dir, create=create) as store:
            return action(store)

    return run_or_exit(run)


def _rule(binding: Any) -> Any:
    from logstream.broker.security.acls import Acl

    return Acl.checked(**binding.__dict__)


def _show(acls: list[Any]) -> None:
    for a in acls:
        where = "cluster" if a.resource_type == "cluster" else f"{a.resource_type}:{a.name}"
        if a.pattern == "prefix":
            where += "*"
        click.echo(f"{a.permission}\t{a.principal}\t{a.operation}\t{where}")


@click.group(epilog=EXAMPLES)
def acl() -> None:
    """Who may do what (the broker runs with --acls; see docs/security.md)."""


@acl.command(epilog=EXAMPLES)
@_selectors
def add(data_dir: Path | None, **selectors: Any) -> None:
    """Add one rule (needs --principal, a resource, --operation and --allow/--deny)."""
    binding = _binding(**selectors)
    if selectors["allow"] is None:
        binding = type(binding)(**{**binding.__dict__, "permission": "allow"})
    if not binding.resource_type:
        binding = type(binding)(**{**binding.__dict__, "pattern": ""})
    if data_dir is not None:
        created = _offline(data_dir, lambda store: store.add([_rule(binding)]), create=True)
    else:
        created = app().admin().create_acls([binding])
    click.echo("added" if created else "already there")


@acl.command("list", epilog=EXAMPLES)
@_selectors
def list_acls(data_dir: Path | None, **selectors: Any) -> None:
    """The rules that match the selectors (all without any)."""
    binding = _binding(**selectors)
    if data_dir is not None:
        _show(_offline(data_dir, lambda store: store.matching(binding.__dict__)))
    else:
        _show(app().admin().list_acls(binding))


@acl.command(epilog=EXAMPLES)
@_selectors
def remove(data_dir: Path | None, **selectors: Any) -> None:
    """Remove every rule that matches the selectors; prints them."""
    binding = _binding(**selectors)
    if not any(binding.__dict__.values()):
        raise click.UsageError("give at least one selector (remove refuses to remove all)")
    if data_dir is not None:
        gone = _offline(data_dir, lambda store: store.remove(binding.__dict__))
    else:
        gone = app().admin().delete_acls(binding)
    _show(gone)
    if not gone:
        click.echo("no matching rule", err=True)
