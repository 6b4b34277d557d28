"""Console sessions without a browser: expiry, a removed user, the failure back-off, and
cookies that were not issued by this broker process."""

from __future__ import annotations

import time
from pathlib import Path

from logstream.broker.http.session import (
    COOKIE_NAME,
    FIRST_FAILURE_DELAY_S,
    MAX_FAILURE_DELAY_S,
    ConsoleSessions,
    token_from,
)
from logstream.broker.security.credentials import CredentialStore


def _cookie(set_cookie: str) -> str:
    return set_cookie.split(";")[0]


def test_a_session_ends_at_expiry_and_when_its_user_is_removed(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    token = store.add("alice")
    short = ConsoleSessions(store, ttl_s=0.2)
    done = short.login(token, "127.0.0.1")
    assert done is not None and done[0] == "alice"
    cookie = _cookie(done[1])
    assert short.principal(cookie) == "alice"
    deadline = time.monotonic() + 5
    while short.principal(cookie) is not None:
        assert time.monotonic() < deadline, "the session outlived its expiry"
        time.sleep(0.05)

    sessions = ConsoleSessions(store)
    cookie = _cookie(sessions.login(token, "127.0.0.1")[1])  # type: ignore[index]
    assert sessions.principal(cookie) == "alice"
    store.remove("alice")
    assert sessions.principal(cookie) is None


def test_cookies_of_another_broker_process_are_refused(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    token = store.add("alice")
    first, second = ConsoleSessions(store), ConsoleSessions(store)
    cookie = _cookie(first.login(token, "127.0.0.1")[1])  # type: ignore[index]
    assert first.principal(cookie) == "alice"
    assert second.principal(cookie) is None  # another key, another table: a restart
    for bad in ("", f"{COOKIE_NAME}=", f"{COOKIE_NAME}=abc", f"{COOKIE_NAME}=a.b", "junk;;=="):
        assert first.principal(bad) is None
    assert first.logout(cookie).endswith("Max-Age=0")
    assert first.principal(cookie) is None


def test_failed_logins_back_off_per_address(tmp_path: Path) -> None:
    sessions = ConsoleSessions(CredentialStore(tmp_path))
    delays = [sessions.note_failure("10.0.0.1") for _ in range(8)]
    assert delays[:3] == [
        FIRST_FAILURE_DELAY_S,
        2 * FIRST_FAILURE_DELAY_S,
        4 * FIRST_FAILURE_DELAY_S,
    ]
    assert delays[-1] == MAX_FAILURE_DELAY_S
    assert sessions.note_failure("10.0.0.2") == FIRST_FAILURE_DELAY_S  # another address
    started = time.monotonic()
    assert sessions.login("ls1.nobody.secret", "10.0.0.3") is None
    assert time.monotonic() - started >= FIRST_FAILURE_DELAY_S


def test_the_login_form_takes_a_token_or_its_two_halves() -> None:
    assert token_from({"token": " ls1.alice.s3cret "}) == "ls1.alice.s3cret"
    assert token_from({"user": "alice", "secret": "s3cret"}) == "ls1.alice.s3cret"
    assert token_from({"user": "alice"}) == ""
