"""The Kafka listener's address rules: protected mode as for the gRPC port."""

from __future__ import annotations

from pathlib import Path

import pytest

from logstream.broker.config import BrokerConfig
from logstream.errors import InvalidConfigError


def test_loopback_kafka_listener_is_accepted(tmp_path: Path) -> None:
    assert BrokerConfig(data_dir=tmp_path, kafka_listen="127.0.0.1:0").kafka_listen


@pytest.mark.parametrize("address", ["nohost", ":9092", "127.0.0.1:x", "127.0.0.1:70000"])
def test_bad_kafka_listen_address(tmp_path: Path, address: str) -> None:
    with pytest.raises(InvalidConfigError, match="kafka_listen"):
        BrokerConfig(data_dir=tmp_path, kafka_listen=address)


def test_kafka_listener_is_accepted_with_authentication(tmp_path: Path) -> None:
    """SASL (--auth) or client certificates authenticate it, so any address will do."""
    config = BrokerConfig(data_dir=tmp_path, kafka_listen="0.0.0.0:9092", auth=True)
    assert config.kafka_listen == "0.0.0.0:9092"


def test_non_loopback_kafka_listener_needs_insecure(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="refusing to listen on"):
        BrokerConfig(data_dir=tmp_path, kafka_listen="0.0.0.0:9092")
    assert BrokerConfig(data_dir=tmp_path, kafka_listen="0.0.0.0:9092", insecure=True)
