"""ACL and user administration from Python: what ``Admin.create_acls / list_acls /
delete_acls`` and ``Admin.create_user / delete_user / list_users`` send.

An :class:`AclBinding` is one rule (see docs/security.md): ``principal`` (a user or
certificate name, or ``*``), ``resource_type`` topic | group | cluster, ``name`` with
``pattern`` literal | prefix, ``operation`` read | write | create | delete | alter |
describe, ``permission`` allow | deny. As a filter, empty fields match anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from logstream import errors
from logstream.client import transport as tr
from logstream.protocol import security_pb2


@dataclass(frozen=True)
class AclBinding:
    principal: str = ""
    resource_type: str = ""
    name: str = ""
    pattern: str = ""
    operation: str = ""
    permission: str = ""

    def to_wire(self) -> security_pb2.Acl:
        return security_pb2.Acl(**asdict(self))

    @classmethod
    def from_wire(cls, acl: Any) -> AclBinding:
        return cls(
            acl.principal, acl.resource_type, acl.name, acl.pattern, acl.operation, acl.permission
        )


def _method(transport: tr.TransportLike, name: str) -> Any:
    method = getattr(transport, name, None)
    if method is None:
        raise errors.InvalidRequestError("this connection has no Security service")
    return method


def create_acls(transport: tr.TransportLike, acls: Iterable[AclBinding], timeout: float) -> int:
    request = security_pb2.CreateAclsRequest(acls=[a.to_wire() for a in acls])
    response = _method(transport, "create_acls")(request, timeout=timeout)
    return int(response.created)


def list_acls(
    transport: tr.TransportLike, flt: AclBinding | None, timeout: float
) -> list[AclBinding]:
    request = security_pb2.ListAclsRequest(filter=(flt or AclBinding()).to_wire())
    response = _method(transport, "list_acls")(request, timeout=timeout)
    return [AclBinding.from_wire(a) for a in response.acls]


def delete_acls(transport: tr.TransportLike, flt: AclBinding, timeout: float) -> list[AclBinding]:
    request = security_pb2.DeleteAclsRequest(filter=flt.to_wire())
    response = _method(transport, "delete_acls")(request, timeout=timeout)
    return [AclBinding.from_wire(a) for a in response.deleted]


def create_user(transport: tr.TransportLike, name: str, rotate: bool, timeout: float) -> str:
    request = security_pb2.CreateUserRequest(name=name, rotate=rotate)
    return str(_method(transport, "create_user")(request, timeout=timeout).token)


def delete_user(transport: tr.TransportLike, name: str, timeout: float) -> None:
    _method(transport, "delete_user")(security_pb2.DeleteUserRequest(name=name), timeout=timeout)


def list_users(transport: tr.TransportLike, timeout: float) -> list[tuple[str, int]]:
    response = _method(transport, "list_users")(security_pb2.ListUsersRequest(), timeout=timeout)
    return [(u.name, int(u.created_ms)) for u in response.users]


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """One principal's quotas (``*``: everyone without their own); 0 is unlimited."""

    principal: str
    produce_bytes_per_s: float = 0.0
    fetch_bytes_per_s: float = 0.0
    requests_per_s: float = 0.0

    @classmethod
    def from_wire(cls, q: Any) -> QuotaLimits:
        return cls(q.principal, q.produce_bytes_per_s, q.fetch_bytes_per_s, q.requests_per_s)


def set_quota(
    transport: tr.TransportLike, principal: str, changes: dict[str, float], timeout: float
) -> QuotaLimits:
    request = security_pb2.SetQuotaRequest(principal=principal, **changes)
    return QuotaLimits.from_wire(_method(transport, "set_quota")(request, timeout=timeout).quota)


def list_quotas(transport: tr.TransportLike, principal: str, timeout: float) -> list[QuotaLimits]:
    request = security_pb2.ListQuotasRequest(principal=principal)
    response = _method(transport, "list_quotas")(request, timeout=timeout)
    return [QuotaLimits.from_wire(q) for q in response.quotas]
