"""Fail when an import crosses a layer boundary.

Allowed directions (STYLE.md rule 10):
codec <- storage <- coordinator <- broker -> protocol <- client <- cli.
``errors``, ``types`` and ``clock`` are shared leaves every layer may use. The check reads
import statements with ``ast``, so it also catches imports inside functions.

    python tools/check_layers.py        # prints violations, exit 1 if any
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "logstream"

# layer -> modules (top-level names under logstream, or third-party roots) it must not import
FORBIDDEN: dict[str, set[str]] = {
    "codec": {"storage", "protocol", "broker", "client", "cli", "grpc"},
    "storage": {"protocol", "broker", "client", "cli", "grpc"},
    "protocol": {"storage", "broker", "client", "cli"},
    "coordinator": {"protocol", "broker", "client", "cli", "grpc"},
    "broker": {"client", "cli"},
    "client": {"storage", "broker", "cli"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _target(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "logstream":
        return parts[1] if len(parts) > 1 else ""
    return parts[0]


def violations() -> list[str]:
    found: list[str] = []
    for layer, banned in FORBIDDEN.items():
        base = PKG / layer
        if not base.exists():
            continue
        for path in sorted(base.rglob("*.py")):
            if "_generated" in path.parts:
                continue
            for lineno, module in _imports(path):
                if _target(module) in banned:
                    rel = path.relative_to(ROOT)
                    found.append(f"{rel}:{lineno}: layer '{layer}' imports {module}")
    return found


def main() -> int:
    problems = violations()
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
