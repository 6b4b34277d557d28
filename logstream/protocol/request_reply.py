"""The request/reply contract on the wire: header names and inbox addresses.

A request is an ordinary record on an ordinary topic with two headers:

* ``logstream-reply-to``: the address to answer to, an inbox topic name
  (``_inbox.`` followed by 32 lowercase hex digits; :func:`new_inbox`);
* ``logstream-correlation-id``: opaque bytes (a Requester uses 32 hex digits in ASCII).

A reply is a record produced to partition 0 of the ``logstream-reply-to`` topic carrying the
request's ``logstream-correlation-id`` header unchanged. Any producer can send it (the Python
``Producer``, or any client that speaks the Produce RPC); ``QueueMessage.reply`` does it for
a responder.

Inbox topics have no log: the broker holds what is produced to one in memory only and pushes
it to the one Subscribe stream that has the inbox open (docs/decisions/0028-request-reply.md).
Both the broker and the client import this module; it depends only on ``errors``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from logstream.errors import InvalidTopicError

REPLY_TO_HEADER = "logstream-reply-to"
CORRELATION_ID_HEADER = "logstream-correlation-id"
INBOX_PREFIX = "_inbox."
INBOX_PATTERN = re.compile(r"_inbox\.[0-9a-f]{32}")


def is_inbox(topic: str) -> bool:
    """True for names in the inbox namespace (valid or not: a malformed one is refused)."""
    return topic.startswith(INBOX_PREFIX)


def is_valid_inbox(topic: str) -> bool:
    return INBOX_PATTERN.fullmatch(topic) is not None


def check_inbox_name(topic: str) -> None:
    """Raise InvalidTopicError unless ``topic`` is a well-formed inbox address."""
    if not is_valid_inbox(topic):
        raise InvalidTopicError(
            f"{topic!r} is in the reply-inbox namespace but is not an inbox address "
            f"({INBOX_PREFIX!r} and 32 lowercase hex digits)"
        )


def new_inbox() -> str:
    """A fresh, unguessable inbox address."""
    return INBOX_PREFIX + uuid.uuid4().hex


def header(headers: Iterable[tuple[str, bytes | None]], name: str) -> bytes | None:
    """The last value of header ``name`` in a sequence of (name, value) pairs, or None."""
    found: bytes | None = None
    for key, value in headers:
        if key == name:
            found = value
    return found
