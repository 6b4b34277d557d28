"""Every command end to end against a real in-process broker (CliRunner, --broker ADDR)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from logstream.cli.main import main
from logstream.testing.broker import RunningBroker, run_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with run_broker(tmp_path_factory.mktemp("data")) as b:
        yield b


def cli(broker: RunningBroker, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--broker", broker.address, *args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def ok(broker: RunningBroker, *args: str, input: str | None = None) -> str:
    code, out, err = cli(broker, *args, input=input)
    assert code == 0, err
    return out


def test_topic_lifecycle(broker: RunningBroker) -> None:
    assert "created topic t-life with 2 partitions" in ok(
        broker, "topic", "create", "t-life", "--partitions", "2", "--config", "retention_ms=60000"
    )
    code, _, err = cli(broker, "topic", "create", "t-life")
    assert code == 1 and err.startswith("error:") and "exists" in err
    ok(broker, "topic", "create", "t-life", "--if-not-exists")
    listed = json.loads(ok(broker, "topic", "list", "-o", "json"))
    assert {"name": "t-life", "partitions": 2, "records": 0, "size_bytes": 0} in listed
    assert "t-life\t2\t0\t0" in ok(broker, "topic", "list")
    desc = json.loads(ok(broker, "topic", "describe", "t-life", "-o", "json"))
    assert desc["config"]["retention_ms"] == "60000"
    assert [p["partition"] for p in desc["partitions"]] == [0, 1]
    table = ok(broker, "topic", "describe", "t-life", "-o", "table")
    assert "START_OFFSET" in table and "retention_ms = 60000" in table
    altered = ok(broker, "topic", "alter", "t-life", "--config", "retention_ms=120000")
    assert "retention_ms\t120000" in altered
    ok(broker, "topic", "add-partitions", "t-life", "--count", "4")
    assert (
        len(json.loads(ok(broker, "topic", "describe", "t-life", "-o", "json"))["partitions"]) == 4
    )
    assert "deleted topic t-life" in ok(broker, "topic", "delete", "t-life")
    code, _, err = cli(broker, "topic", "describe", "t-life")
    assert code == 1 and "t-life" in err


def test_produce_then_tail_consume_offsets(broker: RunningBroker) -> None:
    ok(broker, "topic", "create", "t-pc", "--partitions", "3")
    lines = "".join(f'user-{i % 4}:{{"n": {i}}}\n' for i in range(30))
    out = ok(
        broker,
        "produce",
        "t-pc",
        "--key-separator",
        ":",
        "--header",
        "src=test",
        "-o",
        "json",
        input=lines,
    )
    summary = json.loads(out)
    assert summary["records"] == 30
    assert (
        sum(b["last_offset"] - b["first_offset"] + 1 for b in summary["partitions"].values()) == 30
    )

    tail = ok(broker, "tail", "t-pc", "-o", "jsonl")
    recs = [json.loads(line) for line in tail.splitlines()]
    assert len(recs) == 10
    stamps = [r["timestamp"] for r in recs]
    assert stamps == sorted(stamps)  # merged by timestamp (ties: partition, offset)
    assert all(r["headers"] == {"src": "test"} for r in recs)

    values = ok(broker, "consume", "t-pc", "--from", "beginning", "--exit-at-end").splitlines()
    assert sorted(values, key=lambda v: json.loads(v)["n"]) == [f'{{"n": {i}}}' for i in range(30)]
    only = ok(
        broker,
        "consume",
        "t-pc",
        "--from",
        "beginning",
        "-e",
        "--key",
        "user-1",
        "--format",
        "{key}",
    )
    assert only.splitlines() == ["user-1"] * 8

    offs = json.loads(ok(broker, "offsets", "t-pc", "-o", "json"))
    assert sum(o["end_offset"] for o in offs) == 30
    at = json.loads(ok(broker, "offsets", "t-pc", "--at", "@-1h", "-o", "json"))
    assert all(o["offset"] == 0 for o in at)
    future = json.loads(ok(broker, "offsets", "t-pc", "--at", "+1h", "-o", "json"))
    assert [o["offset"] for o in future] == [o["end_offset"] for o in offs]


def test_produce_messages_partition_and_errors(broker: RunningBroker) -> None:
    ok(broker, "topic", "create", "t-msg", "--partitions", "2")
    out = ok(broker, "produce", "t-msg", "-m", "a", "-m", "b", "--partition", "1")
    assert "produced 2 records" in out and "partition 1: offsets 0-1" in out
    code, _, err = cli(broker, "produce", "t-nope", "-m", "x")
    assert code == 1 and err.startswith("error:") and "t-nope" in err
    code, _, err = cli(broker, "produce", "t-msg", "-m", "x", "--partition", "9")
    assert code == 1 and err.startswith("error:")


def test_tail_until_end_in_every_mode(broker: RunningBroker) -> None:
    ok(broker, "topic", "create", "t-until")
    ok(broker, "produce", "t-until", input="".join(f"{i}\n" for i in range(5)))
    for args in (
        ["tail", "t-until"],
        ["tail", "t-until", "--from", "beginning"],
        ["tail", "t-until", "-f", "--until", "end"],
        ["tail", "t-until", "-f", "--from", "beginning", "--until", "end"],
        ["tail", "t-until", "--since", "1h", "--until", "end"],
        ["consume", "t-until", "--from", "beginning", "--until", "end"],
        ["consume", "t-until", "--exit-at-end"],
        ["tail", "t-until", "-n", "0", "-f", "--until", "end"],
        ["export", "t-until", "--to", "-"],
    ):
        code, _, err = cli(broker, *args)
        assert code == 0, (args, err)


def test_export_jsonl_csv_and_parquet(broker: RunningBroker, tmp_path: Path) -> None:
    ok(broker, "topic", "create", "t-exp", "--partitions", "2")
    ok(broker, "produce", "t-exp", "-K", "=", input="".join(f"k{i}=v{i}\n" for i in range(12)))
    out = ok(broker, "export", "t-exp", "--to", str(tmp_path / "a.jsonl"))
    assert "exported 12 records" in out
    rows = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert sorted(r["value"] for r in rows) == sorted(f"v{i}" for i in range(12))
    ok(broker, "export", "t-exp", "--to", str(tmp_path / "a.csv"), "--grep", "v1")
    with open(tmp_path / "a.csv", newline="") as fh:
        got = list(csv.DictReader(fh))
    assert sorted(r["value"] for r in got) == ["v1", "v10", "v11"]
    code, _, err = cli(broker, "export", "t-exp", "--to", str(tmp_path / "a.csv"))
    assert code == 1 and "--force" in err
    code, _, err = cli(broker, "export", "t-exp", "--to", str(tmp_path / "a.txt"))
    assert code == 2
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow comes with the dev extra")
    ok(broker, "export", "t-exp", "--to", str(tmp_path / "a.parquet"))
    table = pq.read_table(tmp_path / "a.parquet")
    assert table.num_rows == 12
    assert sorted(v.decode() for v in table.column("value").to_pylist()) == sorted(
        f"v{i}" for i in range(12)
    )


def test_export_parquet_without_pyarrow_names_the_extra(
    broker: RunningBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(broker, "topic", "create", "t-nopa")
    ok(broker, "produce", "t-nopa", input="x\n")
    for name in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import pyarrow` raise ImportError
    code, _, err = cli(broker, "export", "t-nopa", "--to", str(tmp_path / "a.parquet"))
    assert code == 1 and "logstream[analytics]" in err
    assert not (tmp_path / "a.parquet").exists()


def test_bench_prints_setup_and_results(broker: RunningBroker) -> None:
    out = json.loads(ok(broker, "bench", "produce", "t-bench", "-n", "2000", "-o", "json"))
    assert out["setup"]["records"] == 2000 and "records/s" in out["results"]
    out = json.loads(ok(broker, "bench", "consume", "t-bench", "-o", "json"))
    assert out["results"]["read"] == 2000
    text = ok(broker, "bench", "produce", "t-bench", "-n", "100")
    assert "SETUP" in text and "RESULTS" in text


def test_completion_scripts() -> None:
    for shell, marker in (("bash", "complete"), ("zsh", "compdef"), ("fish", "complete")):
        result = CliRunner().invoke(main, ["completion", shell])
        assert result.exit_code == 0 and marker in result.stdout


def _command_paths(group: click.Group, prefix: list[str]) -> list[list[str]]:
    ctx = click.Context(group)
    paths = [prefix]
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        if isinstance(cmd, click.Group):
            paths += _command_paths(cmd, [*prefix, name])
        else:
            paths.append([*prefix, name])
    return paths


def test_help_everywhere_has_examples() -> None:
    paths = _command_paths(main, [])
    assert ["serve"] in paths and ["bench", "produce"] in paths and ["group", "reset"] in paths
    for args in paths:
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0, args
        assert "Example" in result.stdout or "Install" in result.stdout, args


def test_data_dir_reads_segments_without_a_broker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with run_broker(data) as b:
        ok(b, "topic", "create", "t-dd", "--partitions", "2")
        ok(b, "produce", "t-dd", input="".join(f"r{i}\n" for i in range(7)))
    runner = CliRunner()
    r = runner.invoke(
        main,
        ["--broker", "127.0.0.1:1", "tail", "t-dd", "--data-dir", str(data), "--format", "{value}"],
    )
    assert r.exit_code == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == sorted(f"r{i}" for i in range(7))
    r = runner.invoke(main, ["offsets", "t-dd", "--data-dir", str(data), "-o", "json"])
    assert sum(o["end_offset"] for o in json.loads(r.stdout)) == 7
    r = runner.invoke(main, ["tail", "t-dd", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1 and "not a logstream data directory" in r.stderr


def test_broker_down_is_one_line_exit_1() -> None:
    for args in (["topic", "list"], ["tail", "x"], ["produce", "x", "-m", "a"]):
        r = CliRunner().invoke(main, ["--broker", "127.0.0.1:1", *args])
        assert r.exit_code == 1, (args, r.stderr)
        assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1, r.stderr


def test_tail_with_group_resumes_where_it_left_off_and_commits(broker: RunningBroker) -> None:
    ok(broker, "topic", "create", "t-grp", "--partitions", "2")
    ok(broker, "produce", "t-grp", input="".join(f"a{i}\n" for i in range(6)))
    first = ok(broker, "consume", "t-grp", "--group", "g-tail", "--from", "beginning", "-e")
    assert sorted(first.split()) == [f"a{i}" for i in range(6)]
    # The commit is visible to group tooling ...
    desc = json.loads(ok(broker, "group", "describe", "g-tail", "-o", "json"))
    rows = desc["partitions"] if isinstance(desc, dict) else desc
    assert sum(r["committed"] or 0 for r in rows) == 6
    # ... and a second run resumes after it: nothing old again, only what is new.
    ok(broker, "produce", "t-grp", input="b0\nb1\n")
    second = ok(broker, "consume", "t-grp", "--group", "g-tail", "-e")
    assert sorted(second.split()) == ["b0", "b1"]
    assert ok(broker, "consume", "t-grp", "--group", "g-tail", "-e").strip() == ""


def test_export_into_a_missing_directory_is_one_clear_line(
    broker: RunningBroker, tmp_path: Path
) -> None:
    cli(broker, "topic", "create", "ex", "--partitions", "1")
    target = tmp_path / "no-such-dir" / "out.jsonl"
    code, out, err = cli(broker, "export", "ex", "--to", str(target))
    assert code == 1 and out == ""
    assert err.startswith("error: cannot write ") and "internal" not in err
    assert str(target) in err and "Traceback" not in err and err.count("\n") == 1


def test_partition_count_is_bounded_by_the_broker(broker: RunningBroker, tmp_path: Path) -> None:
    ok(broker, "topic", "create", "t-bound", "--partitions", "2")
    code, _, err = cli(broker, "topic", "add-partitions", "t-bound", "--count", "100000")
    assert code == 1 and "100000 partitions exceed the broker limit of 10000" in err
    code, _, err = cli(broker, "topic", "create", "t-huge", "--partitions", "20000")
    assert code == 1 and "limit of 10000" in err
    assert "t-huge" not in ok(broker, "topic", "list")
    desc = json.loads(ok(broker, "topic", "describe", "t-bound", "-o", "json"))
    assert len(desc["partitions"]) == 2
    with run_broker(tmp_path / "small", max_partitions_per_topic=4) as small:
        ok(small, "topic", "create", "t", "--partitions", "4")
        code, _, err = cli(small, "topic", "add-partitions", "t", "--count", "5")
        assert code == 1 and "limit of 4 per topic" in err


@pytest.mark.parametrize(
    ("command", "start", "stop", "message"),
    [
        ("tail", "10", "5", "--until 5 is before --from 10"),
        ("consume", "10", "5", "--until 5 is before --from 10"),
        ("export", "10", "5", "--until 5 is before --from 10"),
        ("tail", "@2024-05-02T00:00Z", "@2024-05-01T00:00Z", "is before --from @2024-05-02"),
        ("consume", "@-1h", "@-2h", "is before --from"),
    ],
)
def test_until_before_from_is_a_usage_error(
    broker: RunningBroker, command: str, start: str, stop: str, message: str
) -> None:
    ok(broker, "topic", "create", "t-order", "--if-not-exists")
    extra = ["--to", "-", "--format", "jsonl"] if command == "export" else []
    code, out, err = cli(broker, command, "t-order", "--from", start, "--until", stop, *extra)
    assert code == 2 and message in err, err
    assert out == ""
    # equal bounds, and kinds that cannot be compared up front, are fine (an empty topic)
    assert cli(broker, command, "t-order", "--from", "0", "--until", "0", *extra)[0] == 0
    assert cli(broker, command, "t-order", "--from", "@-1h", "--until", "end", *extra)[0] == 0


def test_tail_n_across_partitions_shows_the_newest_of_each_run_of_equal_timestamps(
    broker: RunningBroker,
) -> None:
    from logstream.client import Producer

    ok(broker, "topic", "create", "t-ties", "--partitions", "2")
    # Produced alternately to the two partitions, all stamped alike (as one producer batch
    # per partition is): the last two produced are the last record of each partition.
    with Producer(broker.address, linger_ms=50) as p:
        for i in range(6):
            p.send("t-ties", b"v%d" % i, partition=i % 2, timestamp_ms=1_714_557_600_000)
        p.flush()
    shown = ok(broker, "tail", "t-ties", "-n", "2", "--format", "{value}").split()
    assert sorted(shown) == ["v4", "v5"]  # before: v3 v5 (ties went by partition number)


def test_group_partitions_without_a_commit_start_where_from_points(broker: RunningBroker) -> None:
    ok(broker, "topic", "create", "t-grp-from", "--partitions", "2")
    ok(broker, "produce", "t-grp-from", "-p", "0", input="".join(f"a{i}\n" for i in range(6)))
    ok(broker, "produce", "t-grp-from", "-p", "1", input="".join(f"b{i}\n" for i in range(6)))
    out = ok(broker, "consume", "t-grp-from", "--group", "g-from", "--from", "-2", "-e")
    assert sorted(out.split()) == ["a4", "a5", "b4", "b5"]
    # ... and once committed, --from no longer moves the group
    ok(broker, "produce", "t-grp-from", "-p", "0", input="a6\n")
    again = ok(broker, "consume", "t-grp-from", "--group", "g-from", "--from", "-2", "-e")
    assert again.split() == ["a6"]
