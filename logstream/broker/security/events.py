"""Structured log events for changes to who may do what (``--log-format json``).

Each change that reaches the broker is one event, whether it came through the Security
service (``source: "rpc"``) or from the files changed offline and read again on SIGHUP
(``source: "reload"``, users and quotas only, found by comparing before and after; ACLs
change only online, see ``acl_log``; rules imported from an older ``acls.json`` at start-up
have ``source: "migration"``):

- ``acl_added`` / ``acl_removed``: ``principal``, ``resource_type``, ``name``, ``pattern``,
  ``operation``, ``permission``, ``source``;
- ``user_added`` / ``user_rotated`` / ``user_removed``: ``user``, ``source`` (never a token
  or a hash);
- ``quota_set`` / ``quota_removed``: ``principal`` and the three rates
  (``produce_bytes_per_s``, ``fetch_bytes_per_s``, ``requests_per_s``; 0 is unlimited).

Who made an online change is in the audit line of the same call (``logstream.audit``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict

from logstream.broker.http.logs import event
from logstream.broker.security.acls import Acl
from logstream.broker.security.credentials import UserRecord
from logstream.broker.security.quotas import Quota

log = logging.getLogger("logstream.broker.security")


def acls_changed(added: Iterable[Acl], removed: Iterable[Acl], source: str) -> None:
    for name, acls in (("acl_added", added), ("acl_removed", removed)):
        for a in acls:
            log.info(
                "%s: %s %s %s on %s %s (%s)",
                name.replace("_", " "),
                a.permission,
                a.principal,
                a.operation,
                a.resource_type,
                a.name,
                a.pattern,
                # not event(): an ACL has a field called "name", as event() has a parameter
                extra={"event": name, "fields": {**asdict(a), "source": source}},
            )


def user_changed(kind: str, user: str, source: str) -> None:
    """``kind``: added, rotated or removed."""
    log.info("user %s: %s", kind, user, extra=event(f"user_{kind}", user=user, source=source))


def users_reloaded(before: Mapping[str, UserRecord], after: Mapping[str, UserRecord]) -> None:
    for name in sorted(after.keys() - before.keys()):
        user_changed("added", name, "reload")
    for name in sorted(after.keys() & before.keys()):
        if after[name].key != before[name].key:
            user_changed("rotated", name, "reload")
    for name in sorted(before.keys() - after.keys()):
        user_changed("removed", name, "reload")


def quotas_reloaded(before: Mapping[str, Quota], after: Mapping[str, Quota]) -> None:
    for principal in sorted(before.keys() | after.keys()):
        old, new = before.get(principal), after.get(principal)
        if new is not None and new != old:
            log.info(
                "quota set: %s",
                principal,
                extra=event("quota_set", principal=principal, **asdict(new)),
            )
        elif new is None and old is not None:
            log.info(
                "quota removed: %s", principal, extra=event("quota_removed", principal=principal)
            )
