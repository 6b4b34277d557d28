"""Access control lists: the rules, their durable file, and cached decisions.

A rule is (principal or ``*``, resource type topic | group | cluster, name, pattern literal |
prefix, operation, allow | deny). A request is allowed when some rule allows it and none
denies it (deny wins); with no matching rule it is denied. A literal ``*`` name matches
every name. Implied operations: any allowed operation on a resource implies ``describe`` of
it; ``create`` on the cluster allows creating any topic.

File ``<data_dir>/security/acls.json`` (0600), the same checksummed document and
tmp + fsync + rename ritual as ``credentials.json``::

    {"crc32": <zlib.crc32 of the canonical body>, "body": {"version": 1, "acls": [
        {"principal": "alice", "resource_type": "topic", "name": "orders",
         "pattern": "literal", "operation": "read", "permission": "allow"}, ...]}}

Decisions are cached per (principal, resource type, name, operation) and the cache is
dropped whenever the rules change (``generation`` counts changes, so holders of an open
stream can tell that they must check again). Thread-safe: the admin RPCs that change rules
run in the pool, checks run on the loop and in the pool.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from logstream.broker.security.credentials import SECURITY_DIR
from logstream.errors import InvalidConfigError, InvalidRequestError
from logstream.storage import files

ACLS_FILE = "acls.json"
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


class AclStore:
    """The rules of one data directory, and the decisions made from them."""

    def __init__(self, data_dir: Path, super_users: frozenset[str] = frozenset()) -> None:
        self.path = Path(data_dir) / SECURITY_DIR / ACLS_FILE
        self.super_users = super_users
        self._lock = threading.Lock()
        self._acls: list[Acl] = []
        self._cache: dict[tuple[str, str, str, str], bool] = {}
        self.generation = 0
        self.reload()

    def reload(self) -> None:
        acls = _parse(self.path) if self.path.exists() else []
        with self._lock:
            self._set(acls)

    def matching(self, flt: dict[str, str] | None = None) -> list[Acl]:
        with self._lock:
            return [a for a in self._acls if a.matches_filter(flt or {})]

    def add(self, acls: list[Acl]) -> list[Acl]:
        """Add the rules not there yet; returns those (the others were there already)."""
        with self._lock:
            new = [a for a in dict.fromkeys(acls) if a not in self._acls]
            if new:
                self._write([*self._acls, *new])
            return new

    def remove(self, flt: dict[str, str]) -> list[Acl]:
        with self._lock:
            gone = [a for a in self._acls if a.matches_filter(flt)]
            if gone:
                self._write([a for a in self._acls if a not in gone])
            return gone

    def allowed(self, principal: str, resource_type: str, name: str, operation: str) -> bool:
        if principal in self.super_users:
            return True
        key = (principal, resource_type, name, operation)
        decision = self._cache.get(key)
        if decision is None:
            with self._lock:
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

    def _write(self, acls: list[Acl]) -> None:
        body = {"version": 1, "acls": [asdict(a) for a in acls]}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        doc = {"crc32": zlib.crc32(canonical), "body": body}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        files.atomic_write(self.path, json.dumps(doc, indent=1).encode() + b"\n")
        os.chmod(self.path, 0o600)
        self._set(acls)


def _parse(path: Path) -> list[Acl]:
    try:
        doc: Any = json.loads(path.read_bytes())
        body = doc["body"]
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        if zlib.crc32(canonical) != doc["crc32"]:
            raise ValueError("checksum mismatch")
        return [Acl.checked(**{k: a[k] for k in ACL_FIELDS}) for a in body["acls"]]
    except (OSError, ValueError, KeyError, TypeError, InvalidRequestError) as exc:
        raise InvalidConfigError(f"ACL file {path} is damaged: {exc}") from exc
