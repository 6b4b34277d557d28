"""Console login: API tokens checked like the gRPC edge does, and signed session cookies.

With authentication on (``--auth``), ``POST /api/login`` takes ``{"token": "ls1.<user>.<secret>"}``
(or ``{"user": U, "secret": S}``, the same token in two fields), verifies it against the
broker's :class:`~logstream.broker.security.credentials.CredentialStore` and answers with a
cookie::

    logstream_session=<session id>.<HMAC-SHA256 of the id, hex>; HttpOnly; SameSite=Strict;
    Path=/; Max-Age=<SESSION_TTL_S>

The HMAC key is 32 random bytes made when the broker starts (never written down), so a
restart logs everyone out; the session id (16 random bytes, URL-safe base64) names a row in
an in-memory table holding the principal and the expiry. ``POST /api/logout`` deletes the
row. A session ends early when its user is removed from the credentials file (checked on
each request) and is refused after its expiry.

Failed logins are answered after a delay that doubles with each recent failure from the
same client address (50 ms up to 2 s, forgotten after 60 s), as at the gRPC edge; at most
``MAX_CONCURRENT_CHECKS`` scrypt checks run at once.

Thread-safety: the HTTP server runs one thread per request; the table and the failure
counters are behind one lock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from logstream.broker.security.credentials import TOKEN_PREFIX, CredentialStore

COOKIE_NAME = "logstream_session"
SESSION_TTL_S = 8 * 3600
MAX_SESSIONS = 10_000
MAX_CONCURRENT_CHECKS = 2
FIRST_FAILURE_DELAY_S = 0.05
MAX_FAILURE_DELAY_S = 2.0
FAILURE_MEMORY_S = 60.0


@dataclass(frozen=True)
class Session:
    principal: str
    expires_at: float  # time.monotonic()


def token_from(form: dict[str, str]) -> str:
    """The token a login form carries: ``token``, or ``user`` and ``secret``."""
    token = form.get("token", "").strip()
    if token:
        return token
    user, secret = form.get("user", "").strip(), form.get("secret", "").strip()
    return f"{TOKEN_PREFIX}{user}.{secret}" if user and secret else ""


class ConsoleSessions:
    def __init__(self, store: CredentialStore, ttl_s: float = SESSION_TTL_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, tuple[int, float]] = {}  # address -> (count, last monotonic)
        self._checks = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)

    # -- login and logout ----------------------------------------------------------------------

    def login(self, token: str, address: str) -> tuple[str, str] | None:
        """``(principal, cookie header value)`` for a valid token, else None after the
        failure delay."""
        with self._checks:
            principal = self.store.verify(token) if token else None
        if principal is None:
            time.sleep(self.note_failure(address))
            return None
        with self._lock:
            self._failures.pop(address, None)
            now = time.monotonic()
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}
                if len(self._sessions) >= MAX_SESSIONS:  # still full: the oldest goes
                    del self._sessions[next(iter(self._sessions))]
            sid = secrets.token_urlsafe(16)
            self._sessions[sid] = Session(principal, now + self.ttl_s)
        return principal, self._cookie(f"{sid}.{self._sign(sid)}", int(self.ttl_s))

    def logout(self, cookie_header: str) -> str:
        """Forget the request's session; the header value that clears the cookie."""
        sid = self._session_id(cookie_header)
        if sid is not None:
            with self._lock:
                self._sessions.pop(sid, None)
        return self._cookie("", 0)

    def principal(self, cookie_header: str) -> str | None:
        """The principal of a valid, unexpired session whose user still exists."""
        sid = self._session_id(cookie_header)
        if sid is None:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if session.expires_at <= time.monotonic() or session.principal not in self.store:
                del self._sessions[sid]
                return None
        return session.principal

    def note_failure(self, address: str) -> float:
        """Count a failed login from ``address``; the delay before answering it."""
        now = time.monotonic()
        with self._lock:
            count, last = self._failures.get(address, (0, now))
            if now - last > FAILURE_MEMORY_S:
                count = 0
            count += 1
            self._failures[address] = (count, now)
            if len(self._failures) > MAX_SESSIONS:
                self._failures = {
                    a: v for a, v in self._failures.items() if now - v[1] <= FAILURE_MEMORY_S
                }
        return float(min(FIRST_FAILURE_DELAY_S * 2 ** (count - 1), MAX_FAILURE_DELAY_S))

    # -- internals ----------------------------------------------------------------------------

    def _sign(self, sid: str) -> str:
        return hmac.new(self._key, sid.encode(), hashlib.sha256).hexdigest()

    def _session_id(self, cookie_header: str) -> str | None:
        try:
            jar = SimpleCookie(cookie_header or "")
        except CookieError:
            return None
        morsel = jar.get(COOKIE_NAME)
        if morsel is None:
            return None
        sid, _, signature = morsel.value.partition(".")
        if not sid or not hmac.compare_digest(signature, self._sign(sid)):
            return None
        return sid

    @staticmethod
    def _cookie(value: str, max_age: int) -> str:
        return f"{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"
