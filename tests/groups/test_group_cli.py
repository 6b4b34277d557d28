"""``logstream group list|describe|reset|delete`` with CliRunner against an in-process broker."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from logstream.cli.group_command import human_duration
from logstream.cli.main import main
from logstream.codec import encode_batch
from logstream.testing.broker import run_broker
from logstream.types import TopicPartition


@pytest.fixture
def broker(tmp_path):
    with run_broker(tmp_path / "data") as b:
        mgr = b.broker.manager
        mgr.create_topic("orders", 2)
        now = b.broker.clock.now_ms()
        for p in range(2):
            mgr.get_log("orders", p).append(
                encode_batch([b"x"] * 10, timestamps=[now - 60_000 + i for i in range(10)])
            )
        b.broker.coordinator.commit(
            "billing", "", -1, {TopicPartition("orders", 0): 4, TopicPartition("orders", 1): 10}
        )
        yield b


def run(broker, *args):
    return CliRunner().invoke(main, ["--broker", broker.address, "group", *args])


def test_list_and_describe(broker):
    r = run(broker, "list", "-o", "table")
    assert r.exit_code == 0, r.output
    assert "billing" in r.output and "Empty" in r.output
    r = run(broker, "describe", "billing", "-o", "table")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "total lag 6" in lines[0]
    assert lines[1].split() == [
        "TOPIC",
        "PARTITION",
        "MEMBER",
        "COMMITTED",
        "END",
        "LAG",
        "TIME_LAG",
    ]
    row0 = lines[2].split()
    assert row0[:6] == ["orders", "0", "-", "4", "10", "6"]
    assert row0[6].endswith("s")  # about a minute old
    assert lines[3].split()[-1] == "-"  # caught up
    r = run(broker, "describe", "billing", "-o", "json")
    rows = json.loads(r.output)
    assert rows[0]["lag"] == 6 and rows[0]["time_lag"] >= 59_000


def test_reset_dry_run_then_execute(broker):
    r = run(broker, "reset", "billing", "--topic", "orders", "--shift-by", "-2", "-o", "plain")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[:2] == ["orders\t0\t4\t2", "orders\t1\t10\t8"]
    assert "dry run" in r.stderr
    assert (
        broker.broker.coordinator.fetch_offsets("billing")[TopicPartition("orders", 0)].offset == 4
    )
    r = run(broker, "reset", "billing", "-t", "orders", "--to-earliest", "-p", "1", "--execute")
    assert r.exit_code == 0, r.output
    got = broker.broker.coordinator.fetch_offsets("billing")
    assert (got[TopicPartition("orders", 0)].offset, got[TopicPartition("orders", 1)].offset) == (
        4,
        0,
    )
    r = run(broker, "reset", "billing", "-t", "orders", "--to-time", "-1h", "--execute")
    assert r.exit_code == 0, r.output
    assert (
        broker.broker.coordinator.fetch_offsets("billing")[TopicPartition("orders", 0)].offset == 0
    )


def test_errors_are_one_line_with_exit_codes(broker):
    r = run(broker, "describe", "ghost")
    assert r.exit_code == 1 and "ghost" in r.stderr
    r = run(broker, "reset", "billing", "--topic", "orders")
    assert r.exit_code == 2 and "exactly one" in r.output + r.stderr
    r = run(broker, "reset", "billing", "--topic", "nope", "--to-latest")
    assert r.exit_code == 1 and "nope" in r.stderr
    broker.broker.coordinator.heartbeat("billing", "", 0, topics=["orders"])
    r = run(broker, "reset", "billing", "--topic", "orders", "--to-latest", "--execute")
    assert r.exit_code == 1 and "active" in r.stderr
    r = run(broker, "delete", "billing")
    assert r.exit_code == 1 and "active members" in r.stderr


def test_delete(broker):
    r = run(broker, "delete", "billing")
    assert r.exit_code == 0 and "deleted group billing" in r.output
    assert run(broker, "list", "-o", "json").output.strip() == "[]"


def test_human_duration():
    assert [human_duration(x) for x in (-1, 5, 12_000, 185_000, 7_800_000, 2 * 86_400_000)] == [
        "-",
        "5ms",
        "12s",
        "3m05s",
        "2h10m",
        "2d00h",
    ]


def test_reset_values_beyond_64_bits_are_usage_errors(broker):
    huge, tiny = str(2**63), str(-(2**63) - 1)
    for option, value in (("--to-offset", huge), ("--shift-by", huge), ("--shift-by", tiny)):
        r = run(broker, "reset", "billing", "--topic", "orders", option, value, "--execute")
        assert r.exit_code == 2, (option, value, r.output, r.stderr)
        assert option in r.stderr and "internal" not in r.stderr


def test_describe_json_with_members_is_one_document(broker):
    from logstream.client import Consumer

    with Consumer(broker.address, group="live", auto_offset_reset="earliest") as c:
        c.subscribe(["orders"])
        deadline = time.monotonic() + 20
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(0.2)
        assert c.assignment(), "the consumer did not join"
        r = run(broker, "describe", "live", "-o", "json", "--members")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)  # before: two documents, which no JSON parser takes
    assert doc["group"] == "live"
    assert len(doc["members"]) == 1
    assert sorted(doc["members"][0]["partitions"]) == ["orders-0", "orders-1"]
    assert {(p["topic"], p["partition"]) for p in doc["partitions"]} <= {
        ("orders", 0),
        ("orders", 1),
    }
