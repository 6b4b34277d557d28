"""SASL on the Kafka listener: PLAIN and SCRAM-SHA-256/512 against the broker's user store.

The password is the user's whole API token (``ls1.<user>.<secret>``, ``logstream user
add``), the user name its user. PLAIN checks the token with the store's scrypt hash;
SCRAM runs RFC 5802 (``scramp``) against the verifiers the store keeps per mechanism, so
neither the token nor its hash crosses the wire.

One :class:`SaslSession` per connection, fed the client's tokens in order (from
SaslAuthenticate requests, or raw frames after a v0 SaslHandshake). A step returns the
server's next token; when the exchange is complete :attr:`SaslSession.principal` is the
user. A failure raises :class:`SaslFailed`, whose message is safe to send to the client
(it never says whether the user exists). Not thread-safe: a connection's requests are
handled one at a time; steps may run on a pool thread (PLAIN's scrypt check takes ~50 ms).
"""

from __future__ import annotations

import logging
from typing import Any

from scramp import ScramMechanism
from scramp.utils import ScramException

from logstream.broker.security.credentials import SCRAM_MECHANISMS, CredentialStore

log = logging.getLogger("logstream.kafka")

PLAIN = "PLAIN"
MECHANISMS = (PLAIN, *SCRAM_MECHANISMS)
_FAILED = "Authentication failed: invalid credentials"


class SaslFailed(Exception):
    """Authentication failed; the connection is closed after the answer."""


class SaslSession:
    def __init__(self, store: CredentialStore) -> None:
        self.store = store
        self.mechanism: str | None = None
        self.principal: str | None = None
        self._scram: Any = None
        self._scram_user: str | None = None
        self._step = 0

    def choose(self, mechanism: str) -> bool:
        """The client's mechanism (SaslHandshake): False when this listener has no such."""
        if mechanism not in MECHANISMS or self.mechanism is not None:
            return False
        self.mechanism = mechanism
        return True

    @property
    def done(self) -> bool:
        return self.principal is not None

    def step(self, token: bytes) -> bytes:
        """The server's answer to the client's next token; raises SaslFailed."""
        if self.mechanism is None or self.done:
            raise SaslFailed("SASL authentication out of order")
        if self.mechanism == PLAIN:
            return self._plain(token)
        return self._scram_step(token)

    def _plain(self, token: bytes) -> bytes:
        try:
            authzid, user, password = token.decode("utf-8").split("\0")
        except ValueError:
            raise SaslFailed("malformed SASL/PLAIN message") from None
        if authzid not in ("", user) or self.store.verify(password) != user:
            raise SaslFailed(_FAILED)
        self.principal = user
        return b""

    def _scram_step(self, token: bytes) -> bytes:
        assert self.mechanism is not None
        try:
            message = token.decode("utf-8")
            if self._step == 0:
                self._step = 1
                self._scram = ScramMechanism(self.mechanism).make_server(self._auth_info)
                self._scram.set_client_first(message)
                return str(self._scram.get_server_first()).encode()
            self._scram.set_client_final(message)
            final = str(self._scram.get_server_final()).encode()
        except (ScramException, UnicodeDecodeError, KeyError, ValueError) as exc:
            log.debug("SCRAM exchange failed at step %d: %r", self._step, exc)
            raise SaslFailed(_FAILED) from exc
        self.principal = self._scram_user
        return final

    def _auth_info(self, user: str) -> tuple[bytes, bytes, bytes, int]:
        verifier = self.store.scram_verifier(user, self.mechanism or "")
        if verifier is None:
            raise KeyError(user)  # scramp turns it into a failed exchange
        self._scram_user = user
        return verifier.salt, verifier.stored_key, verifier.server_key, verifier.iterations
