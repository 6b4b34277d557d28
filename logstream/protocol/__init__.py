"""The wire contract shared by broker and client: generated stubs plus error mapping.

Imports nothing from storage, broker or client.
"""

from logstream.protocol._generated.logstream.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    group_pb2,
    group_pb2_grpc,
    log_pb2,
    log_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
    security_pb2,
    security_pb2_grpc,
)

__all__ = [
    "admin_pb2",
    "admin_pb2_grpc",
    "common_pb2",
    "group_pb2",
    "group_pb2_grpc",
    "log_pb2",
    "log_pb2_grpc",
    "queue_pb2",
    "queue_pb2_grpc",
    "security_pb2",
    "security_pb2_grpc",
]
