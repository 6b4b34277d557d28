"""Fail when a file or a class of ``logstream`` outgrows the size rule.

The rule (PREAMBLE, STYLE): no file over ``MAX_FILE_LINES`` lines and no class over
``MAX_CLASS_LINES`` lines in ``logstream/``. A file or class past the limit holds more than one
concept; split it by concept (each new class saying in its docstring what it does and its
concurrency contract), never by moving arbitrary methods out.

A file counts its physical lines. A class counts from its ``class`` line (or its first
decorator) to its last line, as ``ast`` reports them, so nested classes count inside their
parent too. Generated protobuf code (``_generated``) is not checked.

    python tools/check_sizes.py        # prints violations, exit 1 if any
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "logstream"

MAX_FILE_LINES = 600
MAX_CLASS_LINES = 400

SKIP_DIRS = {"_generated", "__pycache__"}


def _files(pkg: Path) -> Iterator[Path]:
    for path in sorted(pkg.rglob("*.py")):
        if not SKIP_DIRS & set(path.relative_to(pkg).parts):
            yield path


def class_sizes(path: Path) -> Iterator[tuple[str, int, int]]:
    """(qualified class name, first line, line count) for every class in ``path``."""
    tree = ast.parse(path.read_text(), str(path))

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                last = child.end_lineno or child.lineno
                name = f"{prefix}{child.name}"
                yield name, first, last - first + 1
                yield from walk(child, f"{name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(child, f"{prefix}{child.name}.<locals>.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def check(
    pkg: Path, max_file_lines: int = MAX_FILE_LINES, max_class_lines: int = MAX_CLASS_LINES
) -> list[str]:
    """One line per file or class of ``pkg`` over its limit."""
    found: list[str] = []
    for path in _files(pkg):
        rel = path.relative_to(pkg.parent).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > max_file_lines:
            found.append(f"{rel}: {lines} lines (limit {max_file_lines}): split it by concept")
        for name, first, count in class_sizes(path):
            if count > max_class_lines:
                found.append(
                    f"{rel}:{first}: class {name} has {count} lines (limit {max_class_lines}):"
                    " split it by concept"
                )
    return found


def violations() -> list[str]:
    return check(PKG)


def main() -> int:
    problems = violations()
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
