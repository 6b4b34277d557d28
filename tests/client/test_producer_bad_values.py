"""A record whose value is not bytes (``send("t", "text")``, the first thing a user coming
from a client that takes strings types) fails its own future with a TypeError that says
what to pass; the producer keeps working. Before, the sender thread died encoding the
batch ("producer sender crashed") and every later send of that producer timed out."""

from __future__ import annotations

from typing import Any

import pytest

from logstream import Admin, Consumer, Producer, TopicPartition


@pytest.mark.parametrize("idempotence", [True, False])
def test_a_str_value_fails_its_record_and_the_producer_lives_on(
    broker: Any, topic_name: str, idempotence: bool
) -> None:
    Admin(broker.address).create_topic(topic_name)
    with Producer(broker.address, idempotence=idempotence, delivery_timeout_ms=10_000) as p:
        bad = p.send(topic_name, "text")  # type: ignore[arg-type]
        err = bad.exception(10)
        assert isinstance(err, TypeError), err
        assert "must be bytes or None" in str(err) and f"{topic_name}-0" in str(err)
        after = [p.send(topic_name, f"ok-{i}".encode()) for i in range(3)]
        offsets = [f.result(10).offset for f in after]
    assert offsets == sorted(offsets)
    with Consumer(broker.address, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(topic_name, 0)])
        got: list[bytes | None] = []
        for _ in range(50):  # bounded: until the three records are read
            got += [r.value for r in c.poll(timeout=0.2)]
            if len(got) >= 3:
                break
    assert got == [b"ok-0", b"ok-1", b"ok-2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "user-1"}, "key must be bytes or None, got str (encode it: 'user-1'.encode())"),
        ({"headers": {"trace": "abc"}}, "header 'trace' must be bytes or None, got str"),
        ({"headers": [("n", 3)]}, "header 'n' must be bytes or None, got int"),
        ({"headers": {7: b"x"}}, "header names must be str, got int: 7"),
    ],
)
def test_a_str_key_or_header_value_is_refused_at_send_naming_the_field(
    broker: Any, topic_name: str, kwargs: dict[str, Any], message: str
) -> None:
    # It was Python's own words, naming neither the field nor the type wanted: "a
    # bytes-like object is required, not 'str'" (key), "string argument without an
    # encoding" (header value), "'int' object has no attribute 'encode'" (header name).
    Admin(broker.address).create_topic(topic_name)
    with Producer(broker.address) as p:
        with pytest.raises(TypeError) as caught:
            p.send(topic_name, b"v", **kwargs)
        assert str(caught.value).startswith(message), caught.value
        assert p.send(topic_name, b"ok", key=b"k", headers={"h": b"x"}).result(10).offset == 0
