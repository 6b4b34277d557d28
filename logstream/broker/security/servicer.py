"""The Security service: CreateAcls / ListAcls / DeleteAcls over the broker's AclStore.

Plain methods (they write and fsync the ACL file): they run in the server's thread pool.
Who may call them is decided by the authorizer (cluster alter / describe).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from logstream.broker.security.acls import ACL_FIELDS, Acl, AclStore
from logstream.broker.security.authorize import Authorizer
from logstream.errors import InvalidRequestError
from logstream.protocol import security_pb2


def _filter(acl: security_pb2.Acl) -> dict[str, str]:
    return {f: getattr(acl, f) for f in ACL_FIELDS}


def _wire(acl: Acl) -> security_pb2.Acl:
    return security_pb2.Acl(**asdict(acl))


class SecurityServicer:
    def __init__(self, acls: AclStore | None, authorizer: Authorizer | None) -> None:
        self._acls = acls
        self._authorizer = authorizer

    def _store(self) -> AclStore:
        if self._acls is None:
            raise InvalidRequestError("ACLs are off on this broker: start it with --acls")
        return self._acls

    def CreateAcls(self, request: Any, context: Any) -> security_pb2.CreateAclsResponse:
        store = self._store()
        acls = [Acl.checked(**_filter(a)) for a in request.acls]
        created = store.add(acls)
        if created and self._authorizer is not None:
            self._authorizer.rules_changed()
        return security_pb2.CreateAclsResponse(created=created)

    def ListAcls(self, request: Any, context: Any) -> security_pb2.ListAclsResponse:
        found = self._store().matching(_filter(request.filter))
        return security_pb2.ListAclsResponse(acls=[_wire(a) for a in found])

    def DeleteAcls(self, request: Any, context: Any) -> security_pb2.DeleteAclsResponse:
        store = self._store()
        gone = store.remove(_filter(request.filter))
        if gone and self._authorizer is not None:
            self._authorizer.rules_changed()
        return security_pb2.DeleteAclsResponse(deleted=[_wire(a) for a in gone])
