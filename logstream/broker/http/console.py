"""The web console's JSON API and static files, on the same HTTP listener as ``/metrics``.

Routes (all GET; JSON answers are ``application/json``, errors ``{"error": ...}`` with 400
or 404):

- ``/`` and ``/static/NAME``: the page and its JavaScript and CSS, shipped in the package
  (``logstream/broker/http/static``), no CDN;
- ``/api/overview``: the broker and every topic with its traffic counters and size;
- ``/api/topic?name=T``: partitions (offsets, sizes, segments) and config;
- ``/api/groups``: consumer groups with per-partition lag and time lag;
- ``/api/queues``: queue groups from the queue engine's registered source (if wired);
- ``/api/messages?topic=T&partition=P[&offset=O][&limit=N][&order=newest|oldest]
  [&key=K][&text=S]``: decoded records, values as text or hex, paged by offset.

With authentication on (``--auth`` or ``--tls-client-ca``) every ``/api/`` route answers
403: the console has no token login yet and would otherwise bypass the broker's checks.

Everything is read through the objects the gRPC servicers use (``AdminHandler``, the group
coordinator, the partition log's ``read`` as Fetch does); the console never opens a
storage file. A message search reads at most ``MAX_SCAN_BYTES`` per request; newest first
with a filter it searches the ``FILTER_WINDOW`` records before its offset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from logstream.broker.admin import AdminHandler
from logstream.broker.http.metrics import BrokerMetrics
from logstream.codec import decode_headers, iter_batches
from logstream.errors import LogstreamError

StartResponse = Callable[..., Any]

MAX_LIMIT = 500
MAX_SCAN_BYTES = 8 << 20
FILTER_WINDOW = 20_000
"""A filtered newest-first search looks at this many records before its offset."""
STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


class BadRequest(Exception):
    pass


def _text_or_hex(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": data.hex(), "size": len(data)}
    return {"text": text, "size": len(data)}


class ConsoleApi:
    def __init__(self, broker: Any, metrics: BrokerMetrics) -> None:
        self.broker = broker
        self.metrics = metrics
        self.admin = AdminHandler(broker)

    def overview(self) -> dict[str, Any]:
        traffic = self.metrics.traffic()
        topics = []
        for info in self.admin.describe_topics([]):
            if info.error is not None:
                continue
            totals = [0, 0, 0, 0]
            for p in info.partitions:
                for k, v in enumerate(traffic.get((info.name, p.partition), (0, 0, 0, 0))):
                    totals[k] += v
            topics.append(
                {
                    "name": info.name,
                    "partitions": len(info.partitions),
                    "size_bytes": sum(p.size_bytes for p in info.partitions),
                    "records": sum(p.log_end_offset - p.log_start_offset for p in info.partitions),
                    "records_in": totals[0],
                    "bytes_in": totals[1],
                    "records_out": totals[2],
                    "bytes_out": totals[3],
                }
            )
        config = self.broker.config
        return {
            "broker": {"data_dir": str(config.data_dir), "listen": config.listen},
            "topics": topics,
        }

    def topic(self, name: str) -> dict[str, Any]:
        infos = self.admin.describe_topics([name])
        info = infos[0]
        if info.error is not None:
            raise LookupError(f"{info.error.name}: {info.error.message}")
        traffic = self.metrics.traffic()
        return {
            "name": info.name,
            "config": info.config,
            "partitions": [
                {
                    "partition": p.partition,
                    "log_start_offset": p.log_start_offset,
                    "log_end_offset": p.log_end_offset,
                    "size_bytes": p.size_bytes,
                    "segments": p.segment_count,
                    "records_in": traffic.get((name, p.partition), (0, 0, 0, 0))[0],
                    "records_out": traffic.get((name, p.partition), (0, 0, 0, 0))[2],
                    "error": p.error.name if p.error else "",
                }
                for p in info.partitions
            ],
        }

    def groups(self) -> dict[str, Any]:
        coordinator = self.broker.coordinator
        out = []
        for summary in coordinator.list_groups() if coordinator is not None else ():
            try:
                desc = coordinator.describe_group(summary.group_id)
            except LogstreamError:
                continue
            out.append(
                {
                    "group": desc.group_id,
                    "state": desc.state,
                    "members": [
                        {
                            "member_id": m.member_id,
                            "client_id": m.client_id,
                            "assignment": [f"{tp.topic}-{tp.partition}" for tp in m.assignment],
                        }
                        for m in desc.members
                    ],
                    "partitions": [
                        {
                            "topic": p.topic,
                            "partition": p.partition,
                            "member_id": p.member_id,
                            "committed": p.committed_offset,
                            "end": p.log_end_offset,
                            "lag": p.lag,
                            "time_lag_ms": max(p.time_lag_ms, 0),
                        }
                        for p in desc.partitions
                    ],
                    "lag": sum(p.lag for p in desc.partitions),
                }
            )
        return {"groups": out}

    def queues(self) -> dict[str, Any]:
        out = []
        for source in self.metrics.queue_sources:
            for desc in source():
                t = desc.total
                out.append(
                    {
                        "group": desc.group,
                        "depth": t.depth,
                        "available": t.available + t.unread,
                        "in_flight": t.acquired,
                        "delayed": t.delayed,
                        "dead_lettered": t.dead_lettered,
                        "redelivered": t.redelivered,
                        "oldest_age_ms": t.oldest_unfinished_age_ms or 0,
                        "dead_letter_topic": getattr(desc, "dead_letter_topic", ""),
                    }
                )
        return {"queues": out}

    def messages(self, q: dict[str, str]) -> dict[str, Any]:
        topic = q.get("topic", "")
        try:
            partition = int(q.get("partition", "0"))
            limit = min(max(int(q.get("limit", "50")), 1), MAX_LIMIT)
            offset = int(q["offset"]) if q.get("offset", "") != "" else None
        except ValueError as exc:
            raise BadRequest(f"partition, offset and limit are integers: {exc}") from exc
        newest = q.get("order", "newest") != "oldest"
        key = q.get("key", "")
        text = q.get("text", "")
        with self.broker.operation():
            plog = self.broker.get_log(topic, partition)
            start, end = plog.log_start_offset, plog.log_end_offset
            if newest:
                upto = min(end, offset) if offset is not None else end
                first = max(start, upto - (FILTER_WINDOW if key or text else limit))
                found = self._scan(plog, first, upto, key, text)
                page = found[-limit:][::-1]
                more = bool(page) and page[-1]["offset"] > start
                next_offset = page[-1]["offset"] if more else None
            else:
                first = max(start, offset if offset is not None else start)
                found = self._scan(plog, first, end, key, text, stop_after=limit)
                page = found[:limit]
                next_offset = page[-1]["offset"] + 1 if len(page) == limit else None
        return {
            "topic": topic,
            "partition": partition,
            "log_start_offset": start,
            "log_end_offset": end,
            "records": page,
            "next_offset": next_offset,
        }

    def _scan(
        self,
        plog: Any,
        first: int,
        upto: int,
        key: str,
        text: str,
        stop_after: int | None = None,
    ) -> list[dict[str, Any]]:
        """Records in [first, upto) matching the filters; at most MAX_SCAN_BYTES read (a
        newest-first search over a long log keeps the newest matches it saw)."""
        out: list[dict[str, Any]] = []
        want_key = key.encode() if key else None
        want_text = text.encode() if text else None
        position, read = first, 0
        while position < upto and read < MAX_SCAN_BYTES:
            data = plog.read(position, 1 << 20)
            if not data:
                break
            read += len(data)
            last = position
            for batch in iter_batches(data, verify=False):
                for i in range(len(batch)):
                    off = int(batch.offsets[i])
                    last = max(last, off + 1)
                    if off < position or off >= upto:
                        continue
                    k, v = batch.key(i), batch.value(i)
                    if want_key is not None and k != want_key:
                        continue
                    if want_text is not None and want_text not in (v or b""):
                        continue
                    out.append(self._record(batch, i, off, k, v))
                    if stop_after is not None and len(out) >= stop_after:
                        return out
            if last <= position:
                break
            position = last
        return out

    @staticmethod
    def _record(batch: Any, i: int, off: int, k: bytes | None, v: bytes | None) -> dict[str, Any]:
        n, s = int(batch.header_lengths[i]), int(batch.header_starts[i])
        headers = decode_headers(batch.headers_blob[s : s + n]) if n > 0 else ()
        return {
            "offset": off,
            "timestamp_ms": int(batch.timestamps[i]),
            "key": _text_or_hex(k),
            "value": _text_or_hex(v),
            "headers": [[name, _text_or_hex(value)] for name, value in headers],
        }


def _json(start_response: StartResponse, status: str, body: object) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
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


def console_app(
    api: Callable[[], ConsoleApi | None], environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes] | None:
    """Serve a console route, or None when ``PATH_INFO`` is not one."""
    path = environ.get("PATH_INFO", "")
    if path == "/":
        return _static(start_response, "index.html")
    if path.startswith("/static/"):
        return _static(start_response, path[len("/static/") :])
    if not path.startswith("/api/"):
        return None
    console = api()
    if console is None:
        return _json(start_response, "503 Service Unavailable", {"error": "broker starting"})
    if getattr(console.broker.config, "authenticated", False):
        # The console has no token login yet: with authentication on it would bypass it.
        return _json(
            start_response,
            "403 Forbidden",
            {"error": "the console is off while the broker requires authentication"},
        )
    q = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    handlers: dict[str, Callable[[], object]] = {
        "/api/overview": console.overview,
        "/api/topic": lambda: console.topic(q.get("name", "")),
        "/api/groups": console.groups,
        "/api/queues": console.queues,
        "/api/messages": lambda: console.messages(q),
    }
    handler = handlers.get(path)
    if handler is None:
        return _json(start_response, "404 Not Found", {"error": f"no API {path}"})
    try:
        return _json(start_response, "200 OK", handler())
    except (BadRequest, LogstreamError) as exc:
        return _json(start_response, "400 Bad Request", {"error": str(exc)})
    except LookupError as exc:
        return _json(start_response, "404 Not Found", {"error": str(exc)})
