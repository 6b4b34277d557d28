"""tail/consume through CliRunner over an in-memory source: modes, stops, filters, formats,
and usage errors. No broker needed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from logstream.cli.context import AppContext
from logstream.cli.main import main
from logstream.replay.memory import MemorySource, make_records
from logstream.testing.clock import ManualClock
from logstream.types import Record, TopicPartition

BASE = 1_714_557_600_000


def run(src: MemorySource, *args: str, now: int = BASE + 60_000) -> tuple[int, str, str]:
    obj = AppContext(clock=ManualClock(now), utc=True, source_factory=lambda a, d: src)
    result = CliRunner().invoke(main, list(args), obj=obj, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def offsets(stdout: str) -> list[str]:
    return [line.split("  ")[1] for line in stdout.splitlines()]


def test_tail_prints_the_last_10_across_partitions_in_time_order(
    two_partitions: MemorySource,
) -> None:
    code, out, err = run(two_partitions, "tail", "orders")
    assert code == 0, err
    assert offsets(out) == [f"{p}:{o}" for o in range(5, 10) for p in (0, 1)]
    assert "\x1b[" not in out  # piped: no colour


def test_tail_n_and_zero(two_partitions: MemorySource) -> None:
    assert offsets(run(two_partitions, "tail", "orders", "-n", "3")[1]) == ["1:8", "0:9", "1:9"]
    assert run(two_partitions, "tail", "orders", "-n", "0")[1] == ""


def test_tail_from_until_and_count(two_partitions: MemorySource) -> None:
    out = run(two_partitions, "tail", "orders", "--from", "beginning", "--until", "+2")[1]
    assert offsets(out) == ["0:0", "1:0", "0:1", "1:1"]
    out = run(two_partitions, "tail", "orders", "--from", "-1")[1]
    assert offsets(out) == ["0:9", "1:9"]
    out = run(two_partitions, "tail", "orders", "--from", "beginning", "-c", "3")[1]
    assert offsets(out) == ["0:0", "1:0", "0:1"]
    out = run(two_partitions, "tail", "orders", "-p", "1", "--from", "8")[1]
    assert offsets(out) == ["1:8", "1:9"]


def test_tail_time_ranges(two_partitions: MemorySource) -> None:
    # records at BASE + 1000*i (p0 even seconds, p1 odd); now = BASE + 60s
    out = run(two_partitions, "tail", "orders", "--since", "45s")[1]
    assert offsets(out) == ["1:7", "0:8", "1:8", "0:9", "1:9"]
    out = run(
        two_partitions,
        "tail",
        "orders",
        "--from",
        "@2024-05-01T10:00:02Z",
        "--until",
        "@2024-05-01T10:00:05Z",
    )[1]
    assert offsets(out) == ["0:1", "1:1", "0:2"]
    out = run(two_partitions, "tail", "orders", "--from", f"@{BASE + 18_000}")[1]
    assert offsets(out) == ["0:9", "1:9"]


def test_until_end_exits_while_following(two_partitions: MemorySource) -> None:
    two_partitions.appends = make_records("orders", 0, [BASE] * 30)[10:]
    code, out, _ = run(
        two_partitions, "tail", "orders", "--from", "beginning", "-f", "--until", "end"
    )
    assert code == 0 and len(out.splitlines()) == 20


def test_consume_exit_at_end_and_values(two_partitions: MemorySource) -> None:
    code, out, _ = run(two_partitions, "consume", "orders", "--from", "beginning", "-e")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 20 and lines[:2] == ["v0-0", "v1-0"]


def test_consume_from_the_end_with_exit_at_end_prints_nothing(
    two_partitions: MemorySource,
) -> None:
    code, out, _ = run(two_partitions, "consume", "orders", "--exit-at-end")
    assert (code, out) == (0, "")


def test_filters(two_partitions: MemorySource) -> None:
    out = run(two_partitions, "tail", "orders", "--from", "beginning", "--key", "k3")[1]
    assert offsets(out) == ["0:3", "1:3"]
    out = run(two_partitions, "tail", "orders", "--from", "beginning", "--grep", r"v1-[89]")[1]
    assert offsets(out) == ["1:8", "1:9"]
    out = run(two_partitions, "tail", "orders", "--from", "beginning", "--sample", "1/5")[1]
    assert len(out.splitlines()) == 4


def test_header_filter() -> None:
    tp = TopicPartition("t", 0)
    src = MemorySource(
        {
            tp: [
                Record("t", 0, 0, BASE, None, b"a", (("env", b"prod"),)),
                Record("t", 0, 1, BASE, None, b"b", (("env", b"dev"),)),
                Record("t", 0, 2, BASE, None, b"c", ()),
            ]
        }
    )
    assert run(src, "consume", "t", "--from", "beginning", "-e", "--header", "env=prod")[1] == "a\n"
    assert run(src, "consume", "t", "--from", "beginning", "-e", "--header", "env")[1] == "a\nb\n"


def test_formats(two_partitions: MemorySource) -> None:
    out = run(two_partitions, "tail", "orders", "-n", "1", "--format", "%t %p %o %k %s")[1]
    assert out == "orders 1 9 k9 v1-9\n"
    out = run(
        two_partitions,
        "tail",
        "orders",
        "-n",
        "1",
        "--format",
        "{timestamp:iso} {partition}:{offset}",
    )[1]
    assert out == "2024-05-01T10:00:19.000Z 1:9\n"
    out = run(two_partitions, "tail", "orders", "-n", "2", "-o", "jsonl")[1]
    objs = [json.loads(line) for line in out.splitlines()]
    assert [(o["partition"], o["offset"], o["value"]) for o in objs] == [
        (0, 9, "v0-9"),
        (1, 9, "v1-9"),
    ]
    out = run(two_partitions, "tail", "orders", "-n", "2", "-o", "json")[1]
    assert [o["offset"] for o in json.loads(out)] == [9, 9]
    assert json.loads(run(two_partitions, "tail", "orders", "-n", "0", "-o", "json")[1]) == []


def test_colour_can_be_forced(two_partitions: MemorySource) -> None:
    assert "\x1b[" in run(two_partitions, "--color", "tail", "orders", "-n", "1")[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tail", "orders", "--from", "2024-05-01"], "did you mean --from @2024-05-01"),
        (["tail", "orders", "--from", "@yesteryear"], "bad time"),
        (["tail", "orders", "--since", "soon"], "bad --since"),
        (["tail", "orders", "--format", "{nope}"], "unknown field {nope}"),
        (["tail", "orders", "--format", "%x"], "unknown token %x"),
        (["tail", "orders", "--grep", "("], "bad --grep"),
        (["tail", "orders", "-p", "3-1"], "bad partition range"),
        (["tail", "orders", "--rate", "fast"], "bad rate"),
        (["tail", "orders", "--sample", "2/3"], "bad sample"),
        (["tail", "orders", "-n", "5", "--from", "beginning"], "-c/--count"),
        (["tail", "orders", "--since", "1h", "--from", "end"], "do not mix"),
        (["tail", "orders", "-o", "jsonl", "--format", "%s"], "do not mix"),
        (["tail"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_message(
    two_partitions: MemorySource, args: list[str], message: str
) -> None:
    code, out, err = run(two_partitions, *args)
    assert code == 2, (out, err)
    assert message in err
    assert "Traceback" not in err


def test_unknown_topic_and_partition_exit_1(two_partitions: MemorySource) -> None:
    code, _, err = run(two_partitions, "tail", "nope")
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    code, _, err = run(two_partitions, "tail", "orders", "-p", "5")
    assert code == 1 and "has no partition 5" in err


def test_group_is_an_extension_point(two_partitions: MemorySource) -> None:
    code, _, err = run(two_partitions, "tail", "orders", "--group", "g")
    assert code == 1 and "consumer groups" in err
