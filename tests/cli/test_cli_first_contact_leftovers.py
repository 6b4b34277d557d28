"""More of what a new user trips over (a QA pass's leftovers): each test runs the real
``logstream`` command as a subprocess (on a pseudo-terminal where a person would see it)
against a real broker on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logstream.testing.broker import RunningBroker, run_broker

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with run_broker(tmp_path_factory.mktemp("data")) as b:
        yield b


def _env(broker: RunningBroker | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    env.update(extra or {})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env["LOGSTREAM_BROKER"] = broker.address if broker else "127.0.0.1:1"
    return env


def logstream(
    broker: RunningBroker | None, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        capture_output=True,
        text=True,
        env=_env(broker, extra_env),
        timeout=60,
    )


def ok(broker: RunningBroker | None, *args: str, **kw: Any) -> str:
    p = logstream(broker, *args, **kw)
    assert p.returncode == 0, p.stderr
    return p.stdout


def on_terminal(
    broker: RunningBroker | None, *args: str, columns: int = 200, answer: str | None = None
) -> tuple[int, str]:
    """Run on a pseudo-terminal ``columns`` wide (typing ``answer`` at a prompt): the exit
    status and everything shown."""
    import pexpect

    child = pexpect.spawn(
        sys.executable,
        ["-m", "logstream", *args],
        env=_env(broker),
        encoding="utf-8",
        timeout=20,
        dimensions=(50, columns),
    )
    try:
        if answer is not None:
            child.expect(r"\[y/N\]")
            child.sendline(answer)
        child.expect(pexpect.EOF)
        shown = child.before or ""
    finally:
        child.close()
    return child.exitstatus if child.exitstatus is not None else -1, shown


def test_answering_no_at_topic_delete_keeps_it_and_is_not_an_error(
    broker: RunningBroker,
) -> None:
    # It printed click's "Aborted!" and exited 1, the status of a failure.
    ok(broker, "topic", "create", "ql-keep", "--if-not-exists")
    status, shown = on_terminal(broker, "topic", "delete", "ql-keep", answer="n")
    assert status == 0, shown
    assert "topic ql-keep not deleted" in shown and "Aborted" not in shown
    assert "ql-keep" in ok(broker, "topic", "list", "-o", "plain")
    status, shown = on_terminal(broker, "topic", "delete", "ql-keep", answer="y")
    assert status == 0 and "deleted topic ql-keep" in shown, shown
    assert "ql-keep" not in ok(broker, "topic", "list", "-o", "plain")


@pytest.mark.parametrize(
    "args",
    [
        ("user", "list"),
        ("user", "rotate", "alice"),
        ("user", "remove", "alice"),
        ("quota", "list"),
        ("quota", "get", "alice"),
    ],
)
def test_an_offline_command_on_a_missing_data_dir_refuses_and_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    # `user list --data-dir ./typo` printed nothing and exited 0: no users, as far as anyone
    # could tell, on a directory that does not exist.
    typo = tmp_path / "typo"
    p = logstream(None, *args, "--data-dir", str(typo))
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == f"error: no data directory at {typo} (the broker's --data-dir)\n"
    assert not typo.exists()


@pytest.mark.parametrize(
    "args", [("user", "add", "bob"), ("quota", "set", "bob", "--requests-per-s", "1")]
)
def test_a_data_dir_path_through_a_file_is_refused_in_one_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    # A --data-dir under a file gave "error: internal error: NotADirectoryError ..." after
    # "note: ... starting a new one" (a --data-dir that is a file is click's usage error).
    a_file = tmp_path / "f"
    a_file.write_text("x\n")
    p = logstream(None, *args, "--data-dir", str(a_file / "sub"))
    assert (p.returncode, p.stdout) == (1, ""), p.stderr
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    assert f"{a_file} is a file" in p.stderr, p.stderr
    assert a_file.read_text() == "x\n"


def test_user_commands_refuse_a_directory_that_is_not_a_data_dir(
    broker: RunningBroker, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "project"
    elsewhere.mkdir()
    (elsewhere / "README").write_text("not a broker\n")
    for args in (
        ("user", "list"),
        ("user", "add", "bob"),
        ("quota", "set", "bob", "--requests-per-s", "1"),
    ):
        p = logstream(None, *args, "--data-dir", str(elsewhere))
        assert p.returncode == 1 and p.stdout == "", p.stderr
        assert p.stderr.startswith(f"error: {elsewhere} is not a logstream data directory")
        assert p.stderr.count("\n") == 1
    assert sorted(x.name for x in elsewhere.iterdir()) == ["README"]
    # a broker's data dir without users is one: nothing to list, and no complaint
    p = logstream(None, "user", "list", "--data-dir", str(broker.data_dir))
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    # the first token before the first start (docs/security.md) still makes the directory,
    # and says so, so that a mistyped path shows at once
    fresh = tmp_path / "data"
    p = logstream(None, "user", "add", "admin", "--data-dir", str(fresh))
    assert p.returncode == 0 and p.stdout.startswith("ls1.admin."), p.stderr
    assert p.stderr == f"note: no data directory at {fresh} yet: starting a new one\n"
    assert ok(None, "user", "list", "--data-dir", str(fresh)).startswith("admin\tcreated ")


def _visible_lines(shown: str) -> list[str]:
    import re

    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown).replace("\r", "")
    return [line for line in plain.split("\n") if line]


def test_tables_fit_a_narrow_terminal_and_pipes_keep_the_columns(broker: RunningBroker) -> None:
    # At 40 columns every table ran off the right edge and the terminal wrapped each line
    # into the next: `queue describe` (13 columns) was unreadable.
    ok(broker, "topic", "create", "ql-narrow-orders", "--if-not-exists")
    ok(broker, "queue", "create", "ql-narrow-w", "--topic", "ql-narrow-orders")
    ok(broker, "produce", "ql-narrow-orders", "-m", "job", "-q")
    for args in (("topic", "list"), ("queue", "describe", "ql-narrow-w"), ("queue", "list")):
        status, shown = on_terminal(broker, *args, columns=40)
        lines = _visible_lines(shown)
        assert status == 0, shown
        table = [line for line in lines if not line.startswith("queue group ")]  # a title
        assert all(len(line) <= 40 for line in table), "\n".join(lines)
        if args == ("topic", "list"):
            assert ["NAME", "ql-narrow-orders"] in [line.split() for line in table], lines
    _, shown = on_terminal(broker, "queue", "describe", "ql-narrow-w", columns=40)
    blocks = "\n".join(_visible_lines(shown))
    for name, value in (("TOPIC", "ql-narrow-orders"), ("AVAILABLE", "1"), ("PARTITION", "total")):
        assert any(line.split() == [name, value] for line in blocks.split("\n")), blocks
    # wide enough: the aligned table as before
    _, shown = on_terminal(broker, "queue", "describe", "ql-narrow-w", columns=200)
    assert any(
        line.split()[:3] == ["TOPIC", "PARTITION", "DEPTH"] for line in _visible_lines(shown)
    )
    # piped: plain rows, and an asked-for table keeps its columns (a file has no width)
    narrow = {"COLUMNS": "40"}
    plain = ok(broker, "queue", "describe", "ql-narrow-w", extra_env=narrow)
    assert plain.startswith("ql-narrow-orders\t0\t1\t1\t"), plain
    table = ok(broker, "queue", "describe", "ql-narrow-w", "-o", "table", extra_env=narrow)
    assert table.split("\n")[1].split()[:3] == ["TOPIC", "PARTITION", "DEPTH"], table


def test_a_topic_a_queue_group_reads_is_deleted_only_with_force_and_read_again_from_0(
    tmp_path: Path,
) -> None:
    # It was deleted without a word, and the group kept its old window: after the topic was
    # created again, its records below the old acked offset were never delivered (peek
    # showed nothing), also after a restart.
    from logstream.testing.broker import BrokerProcess

    with BrokerProcess(tmp_path / "data", log_level="WARNING") as proc:
        b = RunningBroker(proc.address, 0, tmp_path / "data", None, None)
        ok(b, "topic", "create", "ql-jobs")
        ok(b, "queue", "create", "ql-jobs-w", "--topic", "ql-jobs")
        ok(b, "produce", "ql-jobs", "-m", "a", "-m", "b", "-m", "c", "-m", "d", "-q")
        ok(b, "tail", "--queue", "ql-jobs-w", "--ack", "-n", "3")  # offsets 0..2 acked
        p = logstream(b, "topic", "delete", "ql-jobs", "--yes")
        assert (p.returncode, p.stdout) == (1, ""), p.stderr
        assert p.stderr == (
            "error: queue group ql-jobs-w reads topic ql-jobs: deleting it drops their waiting "
            "and in-flight records; --force to delete it anyway, or logstream queue delete "
            "ql-jobs-w first\n"
        )
        assert "ql-jobs" in ok(b, "topic", "list", "-o", "plain")
        p = logstream(b, "topic", "delete", "ql-jobs", "--yes", "--force")
        assert p.returncode == 0 and p.stdout == "deleted topic ql-jobs\n", p.stderr
        assert "queue group ql-jobs-w starts over on ql-jobs" in p.stderr
        ok(b, "topic", "create", "ql-jobs")
        ok(b, "produce", "ql-jobs", "-m", "new-1", "-m", "new-2", "-q")
        peek = ["queue", "peek", "ql-jobs-w", "-n", "5", "-o", "plain"]
        new = "ql-jobs\t0\t0\t-\tnew-1\nql-jobs\t0\t1\t-\tnew-2\n"  # offsets 0, 1
        assert ok(b, *peek) == new
        proc.restart(kill=True)  # the state log replays the start-over too
        b = RunningBroker(proc.address, 0, tmp_path / "data", None, None)
        assert ok(b, *peek) == new


def test_a_topic_created_again_keeps_its_records_past_a_restart_despite_old_dead_letters(
    tmp_path: Path,
) -> None:
    # The recovery check "already in the dead-letter topic?" matched the deleted topic's
    # letters (same group, topic, partition and offsets) to the new topic's records: after
    # a restart those were marked dead without a copy, and never delivered.
    from logstream.testing.broker import BrokerProcess

    with BrokerProcess(tmp_path / "data", log_level="WARNING") as proc:
        b = RunningBroker(proc.address, 0, tmp_path / "data", None, None)
        ok(b, "topic", "create", "ql-again")
        ok(b, "queue", "create", "ql-again-w", "--topic", "ql-again", "--max-deliveries", "1")
        ok(b, "produce", "ql-again", "-m", "old-1", "-m", "old-2", "-q")
        ok(b, "tail", "--queue", "ql-again-w", "-n", "2")  # released: one delivery each
        described = json.loads(ok(b, "queue", "describe", "ql-again-w", "-o", "json"))
        assert described["partitions"][-1]["dead"] == 2, described  # the total row
        ok(b, "topic", "delete", "ql-again", "--yes", "--force")
        ok(b, "topic", "create", "ql-again")
        ok(b, "produce", "ql-again", "-m", "new-1", "-m", "new-2", "-q")
        peek = ["queue", "peek", "ql-again-w", "-n", "5", "-o", "plain"]
        new = "ql-again\t0\t0\t-\tnew-1\nql-again\t0\t1\t-\tnew-2\n"
        assert ok(b, *peek) == new  # admitted, in the state log
        proc.restart(kill=True)
        b = RunningBroker(proc.address, 0, tmp_path / "data", None, None)
        assert ok(b, *peek) == new
