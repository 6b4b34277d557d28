"""The Security service: ACLs over the broker's AclStore, users (API tokens) over its
CredentialStore, and quotas over its Quotas (written to the quota file, applied at once).

Plain methods (they write and fsync files): they run in the server's thread pool. Who may
call them is decided by the authorizer (cluster alter / describe); the user and quota
methods therefore need ACLs on, or any authenticated principal could mint tokens or lift
its own quota.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from logstream.broker.security.acls import ACL_FIELDS, Acl, AclStore
from logstream.broker.security.authorize import Authorizer
from logstream.broker.security.credentials import CredentialStore
from logstream.broker.security.events import acls_changed, user_changed
from logstream.broker.security.quotas import KINDS, Quota, Quotas
from logstream.errors import InvalidRequestError
from logstream.protocol import security_pb2


def _filter(acl: security_pb2.Acl) -> dict[str, str]:
    return {f: getattr(acl, f) for f in ACL_FIELDS}


def _wire(acl: Acl) -> security_pb2.Acl:
    return security_pb2.Acl(**asdict(acl))


def _quota_pb(principal: str, quota: Quota) -> security_pb2.Quota:
    return security_pb2.Quota(principal=principal, **asdict(quota))


class SecurityServicer:
    def __init__(
        self,
        acls: AclStore | None,
        authorizer: Authorizer | None,
        users: CredentialStore | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self._acls = acls
        self._authorizer = authorizer
        self._users_store = users
        self._quotas_store = quotas

    def _quotas(self) -> Quotas:
        # like users: without ACLs any authenticated principal could lift its own quota
        if self._quotas_store is None or self._acls is None:
            raise InvalidRequestError(
                "online quota changes need --auth and --acls on this broker; "
                "offline: logstream quota set PRINCIPAL ... --data-dir D, then SIGHUP"
            )
        return self._quotas_store

    def SetQuota(self, request: Any, context: Any) -> security_pb2.SetQuotaResponse:
        changes = {k: getattr(request, k) for k in KINDS if request.HasField(k)}
        new = self._quotas().set(request.principal, changes)
        return security_pb2.SetQuotaResponse(quota=_quota_pb(request.principal, new))

    def ListQuotas(self, request: Any, context: Any) -> security_pb2.ListQuotasResponse:
        quotas = self._quotas().snapshot()
        return security_pb2.ListQuotasResponse(
            quotas=[
                _quota_pb(p, q)
                for p, q in sorted(quotas.items())
                if not request.principal or p == request.principal
            ]
        )

    def _users(self) -> CredentialStore:
        if self._users_store is None or self._acls is None:
            raise InvalidRequestError(
                "online user management needs --auth and --acls on this broker; "
                "offline: logstream user add NAME --data-dir D"
            )
        return self._users_store

    def CreateUser(self, request: Any, context: Any) -> security_pb2.CreateUserResponse:
        token = self._users().add(request.name, replace=request.rotate)
        user_changed("rotated" if request.rotate else "added", request.name, "rpc")
        return security_pb2.CreateUserResponse(token=token)

    def DeleteUser(self, request: Any, context: Any) -> security_pb2.DeleteUserResponse:
        self._users().remove(request.name)
        user_changed("removed", request.name, "rpc")
        return security_pb2.DeleteUserResponse()

    def ListUsers(self, request: Any, context: Any) -> security_pb2.ListUsersResponse:
        return security_pb2.ListUsersResponse(
            users=[
                security_pb2.UserInfo(name=u.name, created_ms=u.created_ms)
                for u in self._users().users()
            ]
        )

    def _store(self) -> AclStore:
        if self._acls is None:
            raise InvalidRequestError("ACLs are off on this broker: start it with --acls")
        return self._acls

    def CreateAcls(self, request: Any, context: Any) -> security_pb2.CreateAclsResponse:
        store = self._store()
        acls = [Acl.checked(**_filter(a)) for a in request.acls]
        created = store.add(acls)
        if created:
            acls_changed(created, [], "rpc")
            if self._authorizer is not None:
                self._authorizer.rules_changed()
        return security_pb2.CreateAclsResponse(created=len(created))

    def ListAcls(self, request: Any, context: Any) -> security_pb2.ListAclsResponse:
        found = self._store().matching(_filter(request.filter))
        return security_pb2.ListAclsResponse(acls=[_wire(a) for a in found])

    def DeleteAcls(self, request: Any, context: Any) -> security_pb2.DeleteAclsResponse:
        store = self._store()
        gone = store.remove(_filter(request.filter))
        if gone:
            acls_changed([], gone, "rpc")
            if self._authorizer is not None:
                self._authorizer.rules_changed()
        return security_pb2.DeleteAclsResponse(deleted=[_wire(a) for a in gone])
