"""tools/check_sizes.py: the size rule holds for logstream/, and each limit fails on a tiny
fake package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sizes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_sizes", ROOT / "tools" / "check_sizes.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _class(name: str, body_lines: int, indent: str = "") -> str:
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(body_lines))
    return f"{indent}class {name}:\n{body}"


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "logstream"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_the_tree_keeps_the_size_rule(sizes: ModuleType) -> None:
    assert sizes.violations() == []


def test_a_class_at_the_limit_passes_and_one_line_more_fails(
    sizes: ModuleType, tmp_path: Path
) -> None:
    ok = _package(tmp_path / "a", {"m.py": _class("Fits", 9)})  # 10 lines with its header
    assert sizes.check(ok, max_file_lines=600, max_class_lines=10) == []
    big = _package(tmp_path / "b", {"m.py": "\n" + _class("Big", 10)})
    assert sizes.check(big, max_file_lines=600, max_class_lines=10) == [
        "logstream/m.py:2: class Big has 11 lines (limit 10): split it by concept"
    ]


def test_decorators_and_nested_classes_count(sizes: ModuleType, tmp_path: Path) -> None:
    text = (
        "import dataclasses\n@dataclasses.dataclass\n"
        + _class("Outer", 2)
        + _class("Inner", 8, indent="    ")
    )
    pkg = _package(tmp_path, {"sub/m.py": text})
    assert sizes.check(pkg, max_file_lines=600, max_class_lines=9) == [
        "logstream/sub/m.py:2: class Outer has 13 lines (limit 9): split it by concept"
    ]


def test_a_long_file_fails_and_generated_code_is_skipped(sizes: ModuleType, tmp_path: Path) -> None:
    long = "x = 1\n" * 31
    pkg = _package(tmp_path, {"long.py": long, "protocol/_generated/big_pb2.py": long * 10})
    assert sizes.check(pkg, max_file_lines=30, max_class_lines=400) == [
        "logstream/long.py: 31 lines (limit 30): split it by concept"
    ]
