"""The transport seam: the gRPC transport and the in-memory fake offer the same typed
methods, and only the gRPC transport speaks gRPC."""

from __future__ import annotations

import ast
from pathlib import Path

import logstream
from logstream.client.transport import Transport, TransportLike
from logstream.testing.transport import InMemoryTransport


def _methods(cls: type) -> set[str]:
    """Public methods, inherited ones too (the fake's unmodelled calls live in a base)."""
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}


def test_both_transports_implement_every_method_of_the_protocol() -> None:
    wanted = _methods(TransportLike)
    assert "subscribe" in wanted and "heartbeat" in wanted and "create_topics" in wanted
    assert wanted <= _methods(Transport)
    assert wanted <= _methods(InMemoryTransport)


def _imports_grpc(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "grpc" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "grpc":
            return True
    return False


def test_only_the_grpc_transport_imports_grpc_in_the_client_and_its_fake() -> None:
    root = Path(logstream.__file__).parent
    fake = [root / "testing" / "transport.py", root / "testing" / "unmodelled.py"]
    files = [*(root / "client").rglob("*.py"), *fake]
    importing = {str(p.relative_to(root)) for p in files if _imports_grpc(p)}
    assert importing == {"client/transport.py"}
