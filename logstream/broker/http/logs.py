"""``--log-format text|json``: the broker's log lines, and the structured fields they carry.

Significant moments are logged with ``extra={"event": NAME, "fields": {...}}`` (see
:func:`event`). In JSON mode every line is one object with these stable keys::

    {"ts": "2026-12-06T07:30:00.123Z", "level": "INFO", "logger": "logstream.broker",
     "event": "topic_created", "message": "topic t created with 3 partitions",
     "topic": "t", "partitions": 3}

``event`` is ``"log"`` for lines without a name; an exception adds ``"exception"`` (the
traceback text). Event names (docs/monitoring.md lists their fields): ``broker_started``,
``data_dir_opened``, ``partition_recovered``, ``topic_created``, ``topic_deleted``,
``topic_config_altered``, ``partitions_added``, ``segment_rolled``, ``segments_deleted``,
``slow_request``, ``flush_failed``, ``broker_stopping``, ``broker_stopped``, and the
security changes of ``broker/security/events.py``: ``acl_added``, ``acl_removed``,
``user_added``, ``user_rotated``, ``user_removed``, ``quota_set``, ``quota_removed``. Field names
never collide with the fixed keys: a field named like one is dropped.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FIXED_KEYS = ("ts", "level", "logger", "event", "message", "exception")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def event(name: str, **fields: Any) -> dict[str, Any]:
    """The ``extra=`` of a log call that names a significant event."""
    return {"event": name, "fields": fields}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        out: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
        }
        for key, value in (getattr(record, "fields", None) or {}).items():
            if key not in FIXED_KEYS:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """The serve command's stderr log (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
