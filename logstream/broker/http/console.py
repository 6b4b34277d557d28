"""The web console's routes, on the same HTTP listener as ``/metrics``.

Routes (JSON answers are ``application/json``; errors ``{"error": ...}`` with 400, 403,
404 or 401 for a failed login):

- ``GET /`` and ``GET /static/NAME``: the page and its JavaScript and CSS, shipped in the
  package (``logstream/broker/http/static``), no CDN; always served, so the login form shows;
- ``GET /api/session``: ``{"auth": bool, "principal": name or null}``, always answered;
- ``POST /api/login`` ``{"token": T}`` (or ``{"user": U, "secret": S}``) and
  ``POST /api/logout``: the session cookie (``session.py``);
- ``GET /api/overview``, ``/api/topic?name=T``, ``/api/groups``, ``/api/queues``,
  ``/api/queue?group=G`` (depth per partition, members, dead letters),
  ``/api/messages?...`` (``messages.py``), and ``POST /api/redrive`` ``{"group": G,
  "execute": bool, "reasons": [...]}``: the views of ``views.py``.

With authentication on (``--auth``) every other ``/api/`` route answers 403 until the
browser holds a session, and then runs as its principal (``access.py``: ACLs apply). A
broker with mutual TLS and no ``--auth`` has no token to log in with: its console answers
403. POST bodies must be ``application/json`` (at most ``MAX_BODY_BYTES``): a cross-site
form cannot send that without the browser asking first, and the cookie is SameSite=Strict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from logstream.broker.http.access import Access
from logstream.broker.http.messages import BadRequest
from logstream.broker.http.session import ConsoleSessions, token_from
from logstream.broker.http.views import ConsoleApi
from logstream.broker.security.authorize import Authorizer
from logstream.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    GroupIdNotFoundError,
    LogstreamError,
    TopicAuthorizationFailedError,
)

StartResponse = Callable[..., Any]

MAX_BODY_BYTES = 64 << 10
STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
REFUSALS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


@dataclass
class Console:
    """The console of one attached broker: its views and, with authentication on, the
    login sessions (None: authentication is on but there is no token store) and the ACLs
    (None: off)."""

    api: ConsoleApi
    authenticated: bool = False
    sessions: ConsoleSessions | None = None
    authorizer: Authorizer | None = None


def _json(
    start_response: StartResponse, status: str, body: object, *headers: tuple[str, str]
) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
    )
    return [data]


def _static(start_response: StartResponse, name: str) -> list[bytes]:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or suffix not in STATIC_TYPES:
        return _json(start_response, "404 Not Found", {"error": f"no file {name}"})
    try:
        data = resources.files("logstream.broker.http").joinpath("static", name).read_bytes()
    except (FileNotFoundError, OSError):
        return _json(start_response, "404 Not Found", {"error": f"no file {name}"})
    start_response(
        "200 OK", [("Content-Type", STATIC_TYPES[suffix]), ("Content-Length", str(len(data)))]
    )
    return [data]


def _body(environ: dict[str, Any]) -> dict[str, Any]:
    """A POST's JSON object; BadRequest for anything else."""
    kind = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if kind != "application/json":
        raise BadRequest("POST bodies are application/json")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise BadRequest("bad Content-Length") from exc
    if not 0 < length <= MAX_BODY_BYTES:
        raise BadRequest(f"a POST body is 1 to {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(environ["wsgi.input"].read(length))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body is a JSON object")
    return body


def _login(console: Console, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    if console.sessions is None:
        return _json(
            start_response,
            "400 Bad Request",
            {"error": "this broker has no token authentication to log in with"},
        )
    form = {k: str(v) for k, v in _body(environ).items()}
    done = console.sessions.login(token_from(form), environ.get("REMOTE_ADDR", ""))
    if done is None:
        return _json(start_response, "401 Unauthorized", {"error": "unknown or wrong token"})
    principal, cookie = done
    return _json(start_response, "200 OK", {"principal": principal}, ("Set-Cookie", cookie))


def _access(console: Console, environ: dict[str, Any]) -> Access | None:
    """The request's access; None when authentication is on and it has no session."""
    if not console.authenticated:
        return Access()
    if console.sessions is None:
        return None
    principal = console.sessions.principal(environ.get("HTTP_COOKIE", ""))
    return None if principal is None else Access(principal, console.authorizer)


def console_app(
    get_console: Callable[[], Console | None],
    environ: dict[str, Any],
    start_response: StartResponse,
) -> Iterable[bytes] | None:
    """Serve a console route, or None when ``PATH_INFO`` is not one."""
    path = environ.get("PATH_INFO", "")
    if path == "/":
        return _static(start_response, "index.html")
    if path.startswith("/static/"):
        return _static(start_response, path[len("/static/") :])
    if not path.startswith("/api/"):
        return None
    console = get_console()
    if console is None:
        return _json(start_response, "503 Service Unavailable", {"error": "broker starting"})
    method = environ.get("REQUEST_METHOD", "GET")
    try:
        return _route(console, path, method, environ, start_response)
    except BadRequest as exc:
        return _json(start_response, "400 Bad Request", {"error": str(exc)})
    except REFUSALS as exc:
        return _json(start_response, "403 Forbidden", {"error": f"{exc.name}: {exc}"})
    except GroupIdNotFoundError as exc:
        return _json(start_response, "404 Not Found", {"error": f"{exc.name}: {exc}"})
    except LogstreamError as exc:
        return _json(start_response, "400 Bad Request", {"error": f"{exc.name}: {exc}"})
    except LookupError as exc:
        return _json(start_response, "404 Not Found", {"error": str(exc)})


def _route(
    console: Console,
    path: str,
    method: str,
    environ: dict[str, Any],
    start_response: StartResponse,
) -> list[bytes]:
    if path == "/api/login" and method == "POST":
        return _login(console, environ, start_response)
    if path == "/api/logout" and method == "POST":
        _body(environ)
        cookie = console.sessions.logout(environ.get("HTTP_COOKIE", "")) if console.sessions else ""
        headers = (("Set-Cookie", cookie),) if cookie else ()
        return _json(start_response, "200 OK", {"principal": None}, *headers)
    access = _access(console, environ)
    if path == "/api/session":
        principal = access.principal if access is not None else None
        return _json(
            start_response, "200 OK", {"auth": console.authenticated, "principal": principal}
        )
    if access is None:
        error = "log in: the broker requires authentication"
        if console.sessions is None:
            error = "the console needs token authentication (--auth) on this broker"
        return _json(start_response, "403 Forbidden", {"error": error, "login": True})
    api = console.api
    if method == "POST":
        if path == "/api/redrive":
            body = _body(environ)
            return _timed(start_response, lambda: api.redrive(access, body))
        return _json(start_response, "404 Not Found", {"error": f"no POST API {path}"})
    raw = parse_qs(environ.get("QUERY_STRING", ""))
    q = {k: v[-1] for k, v in raw.items()}
    handlers: dict[str, Callable[[], object]] = {
        "/api/overview": lambda: api.overview(access),
        "/api/topic": lambda: api.topic(access, q.get("name", "")),
        "/api/groups": lambda: api.groups(access),
        "/api/queues": lambda: api.queues(access),
        "/api/queue": lambda: api.queue(access, q.get("group", "")),
        "/api/messages": lambda: api.messages(access, q, raw.get("header", [])),
    }
    handler = handlers.get(path)
    if handler is None:
        return _json(start_response, "404 Not Found", {"error": f"no API {path}"})
    return _timed(start_response, handler)


def _timed(start_response: StartResponse, handler: Callable[[], object]) -> list[bytes]:
    """The view's answer with a ``Server-Timing`` header: wall and CPU time of the view
    and of its JSON encoding (browsers' developer tools show it; the console benchmark
    reads it)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    body = handler()
    view = (time.perf_counter() - wall, time.thread_time() - cpu)
    data = json.dumps(body).encode()
    total = (time.perf_counter() - wall, time.thread_time() - cpu)
    timing = (
        f"view;dur={view[0] * 1000:.2f}, view-cpu;dur={view[1] * 1000:.2f}, "
        f"total;dur={total[0] * 1000:.2f}, total-cpu;dur={total[1] * 1000:.2f}"
    )
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            ("Server-Timing", timing),
        ],
    )
    return [data]
