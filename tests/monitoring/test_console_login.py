"""Console login with authentication on, in headless Chromium against a real broker
process: 403 without a session, a wrong token refused, the token login sets an HttpOnly
SameSite=Strict cookie, the views run as that principal (a topic it may not describe is
not listed and its page is refused), logout ends the session."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from browser_helpers import chromium, click, needs_chromium, no_console_errors, texts, wait
from monitoring_helpers import Monitored, http_get, start_monitored

from logstream import Admin, GroupAdmin, Producer
from logstream.broker.security.credentials import CredentialStore
from logstream.client import AclBinding

pytestmark = needs_chromium
REFUSED_LOADS = ("status of 401", "status of 403")  # Chromium logs refused fetches


@dataclass
class Secured:
    monitored: Monitored
    tokens: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://{self.monitored.http}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    data = tmp_path_factory.mktemp("login") / "data"
    store = CredentialStore(data)
    tokens = {name: store.add(name) for name in ("admin", "alice")}
    m = start_monitored(data, auth=True, acls=True, super_users="admin")
    try:
        with Admin(m.address, token=tokens["admin"]) as admin:
            admin.create_topic("orders")
            admin.create_topic("secret")
            admin.create_acls([AclBinding("alice", "topic", "orders", "literal", "read", "allow")])
        with Producer(m.address, token=tokens["admin"]) as producer:
            producer.send("orders", b"order-1", partition=0)
            producer.send("secret", b"do not show", partition=0)
            producer.flush(10)
        with GroupAdmin(m.address, token=tokens["admin"]) as ga:
            ga.create_queue_group("workers", topics=["orders"])
        yield Secured(m, tokens)
    finally:
        m.proc.terminate()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


def _post(url: str, body: dict[str, Any], cookie: str = "") -> tuple[int, str, str]:
    """(status, body, Set-Cookie) of a JSON POST."""
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = cookie
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode(), resp.headers.get("Set-Cookie", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), ""


def _get(url: str, cookie: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _login_with(driver: Any, token: str) -> None:
    box = wait(driver, lambda d: d.find_elements("name", "token"))[0]
    box.clear()
    box.send_keys(token)
    click(driver, "login-go")


def test_login_in_the_browser_and_acls_apply(secured: Secured, browser: Any) -> None:
    assert http_get(f"{secured.base}/api/overview")[0] == 403
    browser.get(f"{secured.base}/#/")
    wait(browser, lambda d: d.find_elements("id", "login"))

    _login_with(browser, secured.tokens["alice"] + "x")
    wait(browser, lambda d: texts(d, "#login-error") == ["unknown or wrong token"])

    _login_with(browser, secured.tokens["alice"])
    wait(browser, lambda d: texts(d, "#principal") == ["alice"])
    wait(browser, lambda d: texts(d, "a.topic-link") == ["orders"])  # not "secret"
    cookie = next(c for c in browser.get_cookies() if c["name"] == "logstream_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"

    browser.get(f"{secured.base}/#/messages?topic=orders&partition=0")
    wait(browser, lambda d: "order-1" in d.page_source)
    browser.get(f"{secured.base}/#/topic/secret")
    wait(browser, lambda d: "TOPIC_AUTHORIZATION_FAILED" in (texts(d, "#status") or [""])[0])
    assert "do not show" not in browser.page_source

    click(browser, "logout")
    wait(browser, lambda d: d.find_elements("id", "login"))
    wait(browser, lambda d: texts(d, "#principal") == [])
    no_console_errors(browser, allowed=REFUSED_LOADS)


def test_session_cookie_is_signed_and_runs_as_its_principal(secured: Secured) -> None:
    status, body, set_cookie = _post(
        f"{secured.base}/api/login", {"token": secured.tokens["admin"]}
    )
    assert status == 200 and json.loads(body)["principal"] == "admin"
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    cookie = set_cookie.split(";")[0]
    status, overview = _get(f"{secured.base}/api/overview", cookie)
    assert status == 200
    assert {t["name"] for t in overview["topics"]} >= {"orders", "secret"}  # a super user
    assert _get(f"{secured.base}/api/session", cookie)[1] == {"auth": True, "principal": "admin"}

    tampered = cookie[:-1] + ("0" if cookie[-1] != "0" else "1")
    assert _get(f"{secured.base}/api/overview", tampered)[0] == 403
    forged_id = "logstream_session=x" + cookie.partition(".")[1] + cookie.partition(".")[2]
    assert _get(f"{secured.base}/api/overview", forged_id)[0] == 403

    # the user/secret form of the same token logs in too
    user, _, secret = secured.tokens["alice"][len("ls1.") :].partition(".")
    status, body, _ = _post(f"{secured.base}/api/login", {"user": user, "secret": secret})
    assert status == 200 and json.loads(body)["principal"] == "alice"
    assert _post(f"{secured.base}/api/login", {"token": "ls1.nobody.x"})[0] == 401

    status, _, cleared = _post(f"{secured.base}/api/logout", {}, cookie)
    assert status == 200 and "Max-Age=0" in cleared
    assert _get(f"{secured.base}/api/overview", cookie)[0] == 403  # the session is gone


def test_queue_views_and_redrive_follow_the_acls(secured: Secured) -> None:
    """alice may read topic orders but has no rule on the queue group: she does not see
    it, cannot open it, and cannot redrive it; the admin (a super user) can."""
    cookies = {}
    for name in ("alice", "admin"):
        status, _, set_cookie = _post(f"{secured.base}/api/login", {"token": secured.tokens[name]})
        assert status == 200
        cookies[name] = set_cookie.split(";")[0]
    assert _get(f"{secured.base}/api/queues", cookies["alice"]) == (200, {"queues": []})
    status, body = _get(f"{secured.base}/api/queue?group=workers", cookies["alice"])
    assert status == 403 and "GROUP_AUTHORIZATION_FAILED" in body["error"]
    status, body, _ = _post(f"{secured.base}/api/redrive", {"group": "workers"}, cookies["alice"])
    assert status == 403 and "GROUP_AUTHORIZATION_FAILED" in json.loads(body)["error"]

    status, body = _get(f"{secured.base}/api/queues", cookies["admin"])
    assert status == 200 and [q["group"] for q in body["queues"]] == ["workers"]
    status, body, _ = _post(f"{secured.base}/api/redrive", {"group": "workers"}, cookies["admin"])
    assert status == 200 and json.loads(body)["count"] == 0
