"""The CLI on an internal topic: one line naming the refusal, exit status 1, topic intact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from logstream.cli.main import main
from logstream.testing.broker import RunningBroker, run_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with run_broker(tmp_path_factory.mktemp("data")) as b:
        yield b


@pytest.mark.parametrize(
    "args",
    [
        ("topic", "delete", "__consumer_offsets", "--yes"),
        ("topic", "alter", "__consumer_offsets", "--config", "retention_ms=1"),
        ("topic", "add-partitions", "__consumer_offsets", "--count", "9"),
        ("topic", "create", "__mine"),
        ("produce", "__consumer_offsets"),
    ],
)
def test_writes_to_internal_topics_fail_in_one_line(broker: RunningBroker, args) -> None:
    result = CliRunner().invoke(main, ["--broker", broker.address, *args], input="forged\n")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal" in lines[0], result.stderr
    assert "__consumer_offsets" in broker.broker.manager.topics()
    assert len(broker.broker.manager.topic("__consumer_offsets").partitions) == 1
