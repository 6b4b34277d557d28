"""``logstream serve`` options, LOGSTREAM_* environment, TOML config, and BrokerConfig rules."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from broker_helpers import Client
from click.testing import CliRunner

from logstream.broker.config import BrokerConfig, build_config
from logstream.cli.main import main
from logstream.codec import encode_batch
from logstream.errors import InvalidConfigError, UnknownServerError
from logstream.protocol import admin_pb2
from logstream.testing.broker import BrokerProcess, run_broker, write_config_toml

ROOT = Path(__file__).resolve().parents[2]


def test_toml_file_sets_broker_and_topic_defaults(tmp_path):
    path = write_config_toml(
        tmp_path / "b.toml",
        {
            "auto_create_topics": True,
            "default_partitions": 3,
            "topic_defaults": {"retention_ms": 1234, "flush_policy": "every_batch"},
        },
    )
    cfg = build_config(path, listen="127.0.0.1:0", data_dir=tmp_path / "d")
    assert cfg.auto_create_topics and cfg.default_partitions == 3
    assert cfg.topic_defaults["retention_ms"] == 1234
    assert cfg.listen == "127.0.0.1:0" and cfg.data_dir == tmp_path / "d"


def test_command_line_beats_the_file(tmp_path):
    path = write_config_toml(tmp_path / "b.toml", {"listen": "127.0.0.1:1", "log_level": "DEBUG"})
    cfg = build_config(path, listen="127.0.0.1:2", log_level=None)
    assert cfg.listen == "127.0.0.1:2" and cfg.log_level == "DEBUG"


@pytest.mark.parametrize(
    "values",
    [
        {"nonsense": 1},
        {"default_partitions": 0},
        {"listen": "no-port"},
        {"auto_create_topics": "yes"},
        {"max_workers": 1},
        {"topic_defaults": {"flush_policy": "maybe"}},
        {"topic_defaults": {"bogus": 1}},
        {"offsets_compact_min_records": 0},
        {"max_partitions_per_topic": 0},
        {"max_partitions_per_topic": 100_001},  # above what storage holds per topic
    ],
)
def test_bad_broker_config_is_rejected(values):
    with pytest.raises(InvalidConfigError):
        BrokerConfig.from_mapping(values)


def test_bad_config_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(bad)])
    assert result.exit_code == 2 and "nonsense" in result.output
    broken = tmp_path / "broken.toml"
    broken.write_text("this is = = not toml")
    result = CliRunner().invoke(main, ["serve", "--config", str(broken)])
    assert result.exit_code == 2


def test_bad_topic_default_fails_at_start(tmp_path):
    bad = write_config_toml(tmp_path / "b.toml", {"topic_defaults": {"flush_policy": "maybe"}})
    proc = subprocess.run(
        [sys.executable, "-m", "logstream", "serve", "--config", str(bad),
         "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=30, cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 2 and "flush_policy" in proc.stderr


def test_auto_create_topics_from_the_environment(tmp_path):
    data = tmp_path / "data"
    proc = BrokerProcess(data, env={"LOGSTREAM_AUTO_CREATE_TOPICS": "true"})
    proc.start()
    try:
        assert f"(data: {data})" in proc.output()
        client = Client(proc.address)
        res = client.produce("auto-made", 0, encode_batch([b"x"]))
        assert res.error_code == 0 and res.results[0].base_offset == 0
        names = [t.name for t in client.admin.ListTopics(admin_pb2.ListTopicsRequest()).topics]
        assert names == ["auto-made"]
        client.close()
    finally:
        assert proc.terminate() == 0


def test_env_listen_is_used(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "logstream", "serve"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "LOGSTREAM_LISTEN": "127.0.0.1:0",
             "LOGSTREAM_DATA_DIR": str(tmp_path / "d"), "LOGSTREAM_LOG_LEVEL": "warning"},
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("logstream broker listening on 127.0.0.1:")
        assert not line.rstrip().endswith(":0 (data: " + str(tmp_path / "d") + ")")
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_unexpected_exception_is_unknown_server_error_and_broker_keeps_serving(tmp_path):
    with run_broker(tmp_path / "d") as b:
        client = Client(b.address)
        client.create_topic("boom")
        real = b.broker.manager.get_log

        def exploding(topic: str, partition: int):  # type: ignore[no-untyped-def]
            if topic == "boom":
                raise RuntimeError("a bug")
            return real(topic, partition)

        b.broker.manager.get_log = exploding
        res = client.produce("boom", 0, encode_batch([b"x"]))
        assert res.error_code == UnknownServerError.code and "a bug" in res.error_message
        assert client.fetch("boom", 0).error_code == UnknownServerError.code
        client.assert_serving()
        client.close()


def test_shutdown_answers_waiting_long_polls_promptly(tmp_path):
    import threading

    with run_broker(tmp_path / "d") as b:
        client = Client(b.address)
        client.create_topic("idle")
        done: list[float] = []
        t = threading.Thread(
            target=lambda: (client.fetch("idle", 0, 0, max_wait_ms=30_000), done.append(1))
        )
        t.start()
        time.sleep(0.2)
        start = time.monotonic()
        b.stop(grace=10)
        t.join(10)
        assert done and time.monotonic() - start < 3
        client.close()


def test_group_settings_reach_the_coordinator(tmp_path):
    with run_broker(
        tmp_path / "d", offsets_compact_min_records=1234, offsets_retention_ms=60_000
    ) as b:
        config = b.broker.coordinator.config
        assert config.offsets_compact_min_records == 1234
        assert config.offsets_retention_ms == 60_000
