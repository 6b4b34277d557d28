"""The gRPC broker: Log and Admin services over storage (``LogManager``).

``create_server(BrokerConfig(...)) -> (server, port, broker)``; ``serve(config)`` runs one
until SIGTERM/SIGINT. The consumer-group coordinator plugs into ``Broker.coordinator``.
"""

from logstream.broker.broker import Broker
from logstream.broker.config import BrokerConfig, build_config, load_toml
from logstream.broker.server import BrokerServer, create_server, serve

__all__ = [
    "Broker",
    "BrokerConfig",
    "BrokerServer",
    "build_config",
    "create_server",
    "load_toml",
    "serve",
]
