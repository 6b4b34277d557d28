"""Security at the broker's edge: TLS credentials (``tls``), token authentication
(``credentials``, ``interceptor``), ACLs (``acls``, ``acl_log``, ``rules``, ``authorize``,
``servicer``), quotas (``quotas``, ``throttle``), wired together for one port by ``edge``.

Storage and the coordinator never see a principal: everything here wraps the gRPC server
(the listening port's credentials and one interceptor). See docs/security.md and
docs/decisions/0021-security-at-the-edge.md (ACL storage: 0033).
"""
