"""Fail when an import breaks the layer map of ``logstream``.

Three rules, read from import statements with ``ast`` (so imports inside functions and under
``TYPE_CHECKING`` count, and relative imports are resolved):

1. **Downward edges only, from an allow-list.** Every top-level package or module of
   ``logstream`` has an entry in ``ALLOWED``: the other top-level names it may import. An
   import outside its entry fails, and so does a package or module with no entry (a new one
   is listed here on purpose, with its place in the order). ``NO_GRPC`` names the layers that
   must not import grpc at all.
2. **No import circles inside a package.** The modules of each package form a graph (module
   -> module it imports from the same package); every strongly connected part with more than
   one module is reported.
3. **No private names across modules.** ``from a.b import _x`` fails in any module but
   ``a.b`` itself: what another module needs is public under a public name.

``KNOWN`` lists the violations the tree has today that another change is removing; each
entry says which. Remove an entry when it is fixed (a listed exception that no longer
occurs is reported too, so the list cannot go stale).

    python tools/check_layers.py        # prints violations, exit 1 if any
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "logstream"

# The shared leaves every layer may use.
LEAVES = {"errors", "types", "clock", "lazy", "interrupts"}

# top-level name -> the top-level names it may import. The order, bottom up:
# leaves <- codec <- storage <- coordinator <- broker -> protocol <- client <- replay <- cli;
# kafka (the Kafka listener) sits on broker beside the gRPC servicers.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "types": set(),
    "clock": set(),
    "lazy": set(),
    "interrupts": set(),
    "codec": LEAVES,
    "storage": LEAVES | {"codec"},
    "coordinator": LEAVES | {"codec", "storage"},
    "protocol": LEAVES,
    "broker": LEAVES | {"codec", "storage", "coordinator", "protocol"},
    "client": LEAVES | {"__init__", "codec", "protocol"},
    # the replay engine reads through the client or from storage opened read-only
    "replay": LEAVES | {"codec", "storage", "client"},
    # ``serve`` starts a broker in-process; everything else goes through client and replay
    "cli": LEAVES
    | {"__init__", "codec", "storage", "protocol", "client", "replay", "broker", "kafka"},
    # the Kafka listener: an edge beside the gRPC servicers, over the broker's handlers
    "kafka": LEAVES | {"codec", "storage", "coordinator", "broker"},
    # test kit: a broker in a subprocess, an in-memory transport for the client
    "testing": LEAVES | {"__init__", "codec", "protocol", "client", "broker"},
    # the package root re-exports the public API and loads the client lazily
    "__init__": LEAVES | {"client"},
    "__main__": {"cli"},
}

NO_GRPC = {
    "errors",
    "types",
    "clock",
    "lazy",
    "interrupts",
    "codec",
    "storage",
    "coordinator",
    "replay",
    "kafka",
}

SKIP_DIRS = {"_generated", "__pycache__"}


@dataclass(frozen=True)
class Rules:
    allowed: Mapping[str, set[str]]
    no_grpc: set[str]
    known: Mapping[str, str] = field(default_factory=dict)  # violation text -> why it is there


# Violations of today's tree that other branches are removing: violation (without its line
# number, so an edit above the import does not break the match) -> reason.
KNOWN: dict[str, str] = {}

DEFAULT_RULES = Rules(ALLOWED, NO_GRPC, KNOWN)


@dataclass(frozen=True)
class Module:
    name: str  # dotted: logstream.client.consumer
    path: Path
    is_package: bool  # an __init__.py

    @property
    def unit(self) -> str:
        """The top-level name under logstream: a package, or a module like ``errors``."""
        parts = self.name.split(".")
        if len(parts) == 1:
            return "__init__"
        return parts[1]


def _modules(pkg: Path) -> dict[str, Module]:
    out: dict[str, Module] = {}
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg.parent)
        if SKIP_DIRS & set(rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        out[name] = Module(name, path, is_package)
    return out


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # what the statement names: logstream.client, grpc, ...
    names: tuple[str, ...]  # for ``from m import a, b``; () for ``import m``


def _imports(mod: Module) -> Iterator[Import]:
    tree = ast.parse(mod.path.read_text(), str(mod.path))
    package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name, ())
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield Import(node.lineno, base, tuple(a.name for a in node.names))


Imports = Mapping[str, list[Import]]  # module name -> its import statements


def _targets(imp: Import, modules: Mapping[str, Module]) -> list[str]:
    """The logstream modules an import loads: ``from p import m`` means the submodule p.m
    when there is one, else the package p."""
    if imp.module.split(".")[0] != "logstream":
        return []
    if not imp.names:
        return [imp.module]
    out = []
    for name in imp.names:
        sub = f"{imp.module}.{name}"
        out.append(sub if sub in modules else imp.module)
    return out


def _unit_of(name: str) -> str:
    parts = name.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _rel(path: Path, pkg: Path) -> str:
    return path.relative_to(pkg.parent).as_posix()


def _layer_violations(
    modules: Mapping[str, Module], imports: Imports, rules: Rules, pkg: Path
) -> list[str]:
    found: list[str] = []
    units = sorted({m.unit for m in modules.values()})
    for unit in units:
        if unit not in rules.allowed:
            found.append(f"{pkg.name}/{unit}: not in the layer map (add it to ALLOWED)")
    for mod in modules.values():
        allowed = rules.allowed.get(mod.unit)
        if allowed is None:
            continue
        for imp in imports[mod.name]:
            root = imp.module.split(".")[0]
            where = f"{_rel(mod.path, pkg)}:{imp.line}"
            if root == "grpc" and mod.unit in rules.no_grpc:
                found.append(f"{where}: layer '{mod.unit}' imports grpc")
            for target in _targets(imp, modules):
                unit = _unit_of(target)
                if unit != mod.unit and unit not in allowed:
                    found.append(f"{where}: layer '{mod.unit}' imports {target}")
    return found


def _private_violations(modules: Mapping[str, Module], imports: Imports, pkg: Path) -> list[str]:
    found: list[str] = []
    for mod in modules.values():
        for imp in imports[mod.name]:
            if imp.module == mod.name or imp.module.split(".")[0] != "logstream":
                continue
            for name in imp.names:
                if name.startswith("_") and not name.startswith("__"):
                    where = f"{_rel(mod.path, pkg)}:{imp.line}"
                    found.append(f"{where}: imports the private name {name} from {imp.module}")
    return found


def _graph(modules: Mapping[str, Module], imports: Imports) -> dict[str, set[str]]:
    """module -> the modules of the same top-level package it imports."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for mod in modules.values():
        for imp in imports[mod.name]:
            for target in _targets(imp, modules):
                if target in modules and target != mod.name and _unit_of(target) == mod.unit:
                    graph[mod.name].add(target)
    return graph


def _circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected parts with more than one module (Tarjan), each as one circle path
    starting at its smallest name."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.add(w)
                if w == v:
                    break
            if len(part) > 1:
                parts.append(part)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_path_through(part, graph) for part in sorted(parts, key=min)]


def _path_through(part: set[str], graph: Mapping[str, set[str]]) -> list[str]:
    """A shortest circle from the smallest module of ``part`` back to itself."""
    start = min(part)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & part):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    return [start, start]  # unreachable for a strongly connected part


def _circle_violations(modules: Mapping[str, Module], imports: Imports, pkg: Path) -> list[str]:
    found = []
    for circle in _circles(_graph(modules, imports)):
        unit = _unit_of(circle[0])
        found.append(f"{pkg.name}/{unit}: import circle {' -> '.join(circle)}")
    return found


def check(pkg: Path, rules: Rules) -> list[str]:
    """Every violation under ``pkg`` that ``rules.known`` does not list, and every listed one
    that no longer occurs."""
    modules = _modules(pkg)
    imports = {name: list(_imports(mod)) for name, mod in modules.items()}
    found = [
        *_layer_violations(modules, imports, rules, pkg),
        *_circle_violations(modules, imports, pkg),
        *_private_violations(modules, imports, pkg),
    ]
    keys = {_without_line(v) for v in found}
    fresh = [v for v in found if _without_line(v) not in rules.known]
    stale = [f"fixed, remove it from KNOWN: {k}" for k in rules.known if k not in keys]
    return fresh + stale


def _without_line(violation: str) -> str:
    return re.sub(r"^([^:]+):\d+: ", r"\1: ", violation)


def violations() -> list[str]:
    return check(PKG, DEFAULT_RULES)


def main() -> int:
    problems = violations()
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
