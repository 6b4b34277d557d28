"""Access control lists: the rules and the decisions made from them.

A rule is (principal or ``*``, resource type topic | group | cluster, name, pattern literal |
prefix, operation, allow | deny). A request is allowed when some rule allows it and none
denies it (deny wins); with no matching rule it is denied. A literal ``*`` name matches
every name. Implied operations: any allowed operation on a resource implies ``describe`` of
it; ``create`` on the cluster allows creating any topic. The rules' own topic
(:data:`ACLS_TOPIC`) is read and described with cluster ``describe``, like ``ListAcls``,
whatever the topic rules say (a ``*`` topic rule does not hand out the rule set).

The rules are kept by an :class:`AclJournal` (the internal topic ``__acls``, see
:mod:`.acl_log`): every change is written there before it takes effect here, and the
journal's replay gives the rules at start-up.

Decisions are cached per (principal, resource type, name, operation) and the cache is
dropped whenever the rules change (``generation`` counts changes, so holders of an open
stream can tell that they must check again). Thread-safe: the admin RPCs that change rules
run in the pool, checks run on the loop and in the pool.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

from logstream.errors import InvalidRequestError

ACLS_TOPIC = "__acls"
RESOURCE_TYPES = ("topic", "group", "cluster")
PATTERNS = ("literal", "prefix")
OPERATIONS = ("read", "write", "create", "delete", "alter", "describe")
PERMISSIONS = ("allow", "deny")
WILDCARD = "*"
CLUSTER = "cluster"
MAX_CACHED_DECISIONS = 100_000


@dataclass(frozen=True)
class Acl:
    principal: str
    resource_type: str
    name: str
    pattern: str
    operation: str
    permission: str

    @classmethod
    def checked(
        cls,
        principal: str,
        resource_type: str,
        name: str,
        pattern: str = "literal",
        operation: str = "",
        permission: str = "allow",
    ) -> Acl:
        """A rule with every field validated (InvalidRequestError names the bad one)."""
        if resource_type == CLUSTER:
            name, pattern = CLUSTER, "literal"
        values = {
            "resource_type": (resource_type, RESOURCE_TYPES),
            "pattern": (pattern, PATTERNS),
            "operation": (operation, OPERATIONS),
            "permission": (permission, PERMISSIONS),
        }
        for field, (value, allowed) in values.items():
            if value not in allowed:
                raise InvalidRequestError(f"{field} must be one of {'|'.join(allowed)}: {value!r}")
        if not principal:
            raise InvalidRequestError("an ACL needs a principal (a name, or * for everyone)")
        if not name:
            raise InvalidRequestError(f"a {resource_type} ACL needs a name (or * for all)")
        return cls(principal, resource_type, name, pattern, operation, permission)

    def matches_name(self, name: str) -> bool:
        if self.pattern == "prefix":
            return name.startswith(self.name)
        return self.name == name or self.name == WILDCARD

    def matches_filter(self, flt: dict[str, str]) -> bool:
        return all(getattr(self, k) == v for k, v in flt.items() if v)


ACL_FIELDS = tuple(f.name for f in fields(Acl))


class AclJournal(Protocol):
    """Where the rules are kept durably."""

    def replay(self) -> list[Acl]:
        """The rules as last written, in the order they were added."""
        ...

    def append(self, added: Sequence[Acl], removed: Sequence[Acl]) -> None:
        """Make one change durable as a unit before it returns (raises: nothing written)."""
        ...

    def compact(self, rules: Sequence[Acl]) -> int:
        """Called after each change with every live rule: drop obsolete history when due."""
        ...


class AclStore:
    """The rules of one broker, and the decisions made from them."""

    def __init__(self, journal: AclJournal, super_users: frozenset[str] = frozenset()) -> None:
        self.journal = journal
        self.super_users = super_users
        self._lock = threading.Lock()
        self._acls: list[Acl] = []
        self._cache: dict[tuple[str, str, str, str], bool] = {}
        self.generation = 0
        # Decisions computed by scanning the rules (cache misses): a scan per batch would
        # show here as growth with traffic, not with distinct (principal, resource, operation).
        self.rule_scans = 0
        with self._lock:
            self._set(journal.replay())

    def matching(self, flt: dict[str, str] | None = None) -> list[Acl]:
        with self._lock:
            return [a for a in self._acls if a.matches_filter(flt or {})]

    def add(self, acls: list[Acl]) -> list[Acl]:
        """Add the rules not there yet; returns those (the others were there already)."""
        with self._lock:
            new = [a for a in dict.fromkeys(acls) if a not in self._acls]
            if new:
                self.journal.append(new, [])
                self._set([*self._acls, *new])
                self.journal.compact(self._acls)
            return new

    def remove(self, flt: dict[str, str]) -> list[Acl]:
        with self._lock:
            gone = [a for a in self._acls if a.matches_filter(flt)]
            if gone:
                self.journal.append([], gone)
                self._set([a for a in self._acls if a not in gone])
                self.journal.compact(self._acls)
            return gone

    def allowed(self, principal: str, resource_type: str, name: str, operation: str) -> bool:
        if principal in self.super_users:
            return True
        key = (principal, resource_type, name, operation)
        decision = self._cache.get(key)
        if decision is None:
            with self._lock:
                self.rule_scans += 1
                if resource_type == "topic" and name == ACLS_TOPIC:
                    decision = self._decide(principal, CLUSTER, CLUSTER, "describe")
                else:
                    decision = self._decide(*key)
                if len(self._cache) >= MAX_CACHED_DECISIONS:
                    self._cache.clear()
                self._cache[key] = decision
        return decision

    def _decide(self, principal: str, resource_type: str, name: str, operation: str) -> bool:
        allow = False
        for acl in self._acls:
            if acl.principal not in (principal, WILDCARD):
                continue
            if acl.resource_type == resource_type and acl.matches_name(name):
                same = acl.operation == operation
                if same and acl.permission == "deny":
                    return False
                if acl.permission == "allow" and (same or operation == "describe"):
                    allow = True
            elif (
                acl.resource_type == CLUSTER
                and resource_type == "topic"
                and operation == "create"
                and acl.operation == "create"
            ):
                if acl.permission == "deny":
                    return False
                allow = True
        return allow

    def _set(self, acls: list[Acl]) -> None:
        self._acls = acls
        self._cache = {}
        self.generation += 1
