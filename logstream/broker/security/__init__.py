"""Security at the broker's edge: TLS credentials, authentication, and protected mode.

Storage and the coordinator never see a principal: everything here wraps the gRPC server
(an interceptor and the listening port's credentials). See docs/security.md.
"""

from logstream.broker.security.credentials import CredentialStore
from logstream.broker.security.interceptor import AuthInterceptor
from logstream.broker.security.tls import ServerTls

__all__ = ["AuthInterceptor", "CredentialStore", "ServerTls"]
