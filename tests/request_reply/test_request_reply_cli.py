"""``logstream request`` and ``logstream reply`` as subprocesses against a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from logstream import Admin
from logstream.testing.broker import BrokerProcess

UPPER = [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"]


@pytest.fixture(scope="module")
def cli_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with BrokerProcess(tmp_path_factory.mktemp("rr-cli") / "data") as proc:
        yield proc


def logstream(broker: BrokerProcess, *args: str, stdin: str | None = None, timeout: float = 60):
    env = {**os.environ, "LOGSTREAM_BROKER": broker.address}
    return subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def start_reply(broker: BrokerProcess, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "LOGSTREAM_BROKER": broker.address}
    return subprocess.Popen(
        [sys.executable, "-m", "logstream", "reply", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def new_topic(broker: BrokerProcess) -> str:
    name = f"rrcli-{uuid.uuid4().hex[:8]}"
    with Admin(broker.address) as admin:
        admin.create_topic(name, partitions=1)
    return name


def test_request_and_reply_commands(cli_broker: BrokerProcess) -> None:
    topic = new_topic(cli_broker)
    responder = start_reply(cli_broker, topic, "--group", "up", "--count", "2", "--", *UPPER)
    try:
        done = logstream(cli_broker, "request", topic, "hello", "--timeout", "30")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "HELLO\n"
        done = logstream(cli_broker, "request", topic, "-", "-t", "30", stdin="from stdin\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "FROM STDIN\n"
        assert responder.wait(30) == 0  # --count 2: both answered, then it exits
    finally:
        responder.kill()
        responder.communicate(timeout=10)


def test_request_timeout_is_one_line_and_exit_1(cli_broker: BrokerProcess) -> None:
    topic = new_topic(cli_broker)
    done = logstream(cli_broker, "request", topic, "anyone?", "--timeout", "0.3")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: no reply from {topic} within 0.3 s (is a responder running?)"
    ]


def test_failing_command_gets_no_reply(cli_broker: BrokerProcess) -> None:
    topic = new_topic(cli_broker)
    fail = [sys.executable, "-c", "import sys; sys.exit(3)"]
    responder = start_reply(cli_broker, topic, "--group", "bad", "--", *fail)
    try:
        done = logstream(cli_broker, "request", topic, "x", "--timeout", "3")
        assert done.returncode == 1
        assert "no reply" in done.stderr
    finally:
        responder.terminate()
        _, err = responder.communicate(timeout=20)
    assert "command exited 3" in err
