"""What one console request may see and do.

Without authentication every request sees everything (as every gRPC call may). With
authentication the request runs as its session's principal, and with ACLs on each console
view asks the broker's :class:`~logstream.broker.security.authorize.Authorizer` exactly what
the gRPC call of the same meaning asks (``rules.CHECKS`` on that call's request message, the
same audit lines), and filters lists by ``describe`` as ``rules.FILTERS`` do:

============================  =========================================================
console view                  checked as
============================  =========================================================
overview (topic list)         Admin/ListTopics, each topic kept if ``describe`` allowed
topic page                    Admin/DescribeTopics of that topic
message browser               Log/Fetch of that topic
consumer groups               Group/ListGroups, each group kept if ``describe``; its
                              partitions kept if the topic's ``describe`` is allowed
queue groups                  Queue/ListQueueGroups, each kept if ``describe`` allowed
dead-letter view              Queue/DescribeQueueGroup + Log/Fetch of its DLQ topic
redrive (dry run or execute)  Queue/Redrive (``alter`` on the group)
============================  =========================================================
"""

from __future__ import annotations

from typing import Any

from logstream.broker.security.authorize import Authorizer


class Access:
    """``principal`` None: authentication is off and everything is allowed; a principal
    with ``authorizer`` None: authenticated, ACLs off (allowed, as at the gRPC edge)."""

    def __init__(self, principal: str | None = None, authorizer: Authorizer | None = None):
        self.principal = principal
        self.authorizer = authorizer

    @property
    def checked(self) -> bool:
        return self.principal is not None and self.authorizer is not None

    def allowed(self, resource_type: str, name: str, operation: str) -> bool:
        if self.principal is None or self.authorizer is None:
            return True
        return self.authorizer.acls.allowed(self.principal, resource_type, name, operation)

    def require(self, method: str, request: Any) -> None:
        """Raise the refusal the gRPC call ``method`` with ``request`` would get."""
        if self.principal is None or self.authorizer is None:
            return
        err = self.authorizer.first_refusal(self.principal, method, request)
        if err is not None:
            raise err
