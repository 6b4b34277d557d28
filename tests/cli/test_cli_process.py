"""The CLI as a real process: exit codes, no tracebacks, pipes (no colour, no status line,
a closed pipe is quiet), and ``tail -f`` in a real pseudo-terminal with Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from logstream.testing.broker import RunningBroker, run_broker

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with run_broker(tmp_path_factory.mktemp("data")) as b:
        yield b


def env(broker: RunningBroker | None = None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, e.get("PYTHONPATH")) if p)
    e["LOGSTREAM_BROKER"] = broker.address if broker else "127.0.0.1:1"
    return e


def logstream(broker: RunningBroker | None, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        input=input,
        capture_output=True,
        text=True,
        env=env(broker),
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["topic", "list"], 1),  # broker down
        (["tail", "orders"], 1),
        (["tail", "orders", "--from", "@not-a-time"], 2),
        (["tail", "orders", "--format", "{bad}"], 2),
        (["topic", "create"], 2),
        (["no-such-command"], 2),
    ],
)
def test_exit_codes_without_tracebacks(args: list[str], code: int) -> None:
    p = logstream(None, *args)
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr
    if code == 1:
        assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1


def test_version() -> None:
    p = logstream(None, "--version")
    assert p.returncode == 0 and "0.1.0" in p.stdout


def test_unknown_topic_against_a_live_broker(broker: RunningBroker) -> None:
    p = logstream(broker, "tail", "missing-topic")
    assert p.returncode == 1 and "missing-topic" in p.stderr and "Traceback" not in p.stderr


def test_piped_output_has_no_colour_and_a_closed_pipe_is_quiet(broker: RunningBroker) -> None:
    assert logstream(broker, "topic", "create", "t-pipe").returncode == 0
    p = logstream(broker, "produce", "t-pipe", input="".join(f"{i}\n" for i in range(3000)))
    assert p.returncode == 0 and "produced 3000 records" in p.stdout
    assert "\r" not in p.stderr  # no progress on a pipe
    p = logstream(broker, "tail", "t-pipe", "-n", "5", "-f", "--until", "end")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 5
    assert "\x1b" not in p.stdout and "\x1b" not in p.stderr and p.stderr == ""
    cmd = f"{sys.executable} -m logstream tail t-pipe --from beginning | head -3"
    sh = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd],
        capture_output=True,
        text=True,
        env=env(broker),
        timeout=60,
    )
    assert sh.returncode == 0, sh.stderr
    assert len(sh.stdout.splitlines()) == 3 and sh.stderr == ""


def test_tail_follow_in_a_pty_shows_new_records_and_exits_0_on_ctrl_c(
    broker: RunningBroker,
) -> None:
    assert logstream(broker, "topic", "create", "t-pty", "--partitions", "2").returncode == 0
    child = pexpect.spawn(
        sys.executable,
        ["-m", "logstream", "tail", "t-pty", "-f"],
        env=env(broker),
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 200),
    )
    try:
        child.expect("following")  # the status line (stderr is the pty)
        for i in range(3):
            p = logstream(broker, "produce", "t-pty", "-m", f"hello-pty-{i}")
            assert p.returncode == 0
            child.expect(f"hello-pty-{i}")
        time.sleep(0.3)
        child.sendintr()
        child.expect(r"3 records shown")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
