"""The rules of tools/check_layers.py, each shown to fail on a tiny fake package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def layers() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_layers", ROOT / "tools" / "check_layers.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # as importlib's recipe does; dataclasses look it up
    spec.loader.exec_module(mod)
    return mod


def make_package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "logstream"
    for rel, text in {"__init__.py": "", "errors.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


CLEAN = {
    "low/__init__.py": "",
    "low/a.py": "from logstream import errors\n",
    "low/b.py": "from logstream.low.a import thing\n",
    "high/__init__.py": "from logstream.high.c import C\n",
    "high/c.py": "from logstream.low import a\nfrom logstream.low.b import other\n",
}


def rules(layers: ModuleType, known: dict[str, str] | None = None) -> object:
    allowed = {"errors": set(), "__init__": set(), "low": {"errors"}, "high": {"low", "errors"}}
    return layers.Rules(allowed, {"low"}, known or {})


def test_a_clean_package_passes(layers: ModuleType, tmp_path: Path) -> None:
    assert layers.check(make_package(tmp_path, CLEAN), rules(layers)) == []


def test_an_upward_import_fails_also_inside_a_function(layers: ModuleType, tmp_path: Path) -> None:
    pkg = make_package(tmp_path, {**CLEAN, "low/up.py": "def f():\n    import logstream.high.c\n"})
    assert layers.check(pkg, rules(layers)) == [
        "logstream/low/up.py:2: layer 'low' imports logstream.high.c"
    ]


def test_a_relative_upward_import_fails(layers: ModuleType, tmp_path: Path) -> None:
    pkg = make_package(tmp_path, {**CLEAN, "low/up.py": "from ..high import c\n"})
    assert layers.check(pkg, rules(layers)) == [
        "logstream/low/up.py:1: layer 'low' imports logstream.high.c"
    ]


def test_grpc_is_refused_where_listed(layers: ModuleType, tmp_path: Path) -> None:
    pkg = make_package(
        tmp_path, {**CLEAN, "low/net.py": "import grpc\n", "high/net.py": "import grpc\n"}
    )
    assert layers.check(pkg, rules(layers)) == ["logstream/low/net.py:1: layer 'low' imports grpc"]


def test_an_unlisted_package_or_module_fails(layers: ModuleType, tmp_path: Path) -> None:
    pkg = make_package(
        tmp_path, {**CLEAN, "extra/__init__.py": "", "loose.py": "from logstream.low import a\n"}
    )
    found = layers.check(pkg, rules(layers))
    assert "logstream/extra: not in the layer map (add it to ALLOWED)" in found
    assert "logstream/loose: not in the layer map (add it to ALLOWED)" in found
    assert len(found) == 2


def test_importing_an_unlisted_package_fails(layers: ModuleType, tmp_path: Path) -> None:
    pkg = make_package(
        tmp_path, {**CLEAN, "extra/__init__.py": "", "low/x.py": "import logstream.extra\n"}
    )
    found = layers.check(pkg, rules(layers))
    assert "logstream/low/x.py:1: layer 'low' imports logstream.extra" in found


def test_an_import_circle_inside_a_package_fails(layers: ModuleType, tmp_path: Path) -> None:
    pkg = make_package(
        tmp_path,
        {
            **CLEAN,
            "high/d.py": "from logstream.high import e\n",
            "high/e.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from logstream.high.d import D\n",
        },
    )
    assert layers.check(pkg, rules(layers)) == [
        "logstream/high: import circle logstream.high.d -> logstream.high.e -> logstream.high.d"
    ]


def test_a_circle_through_the_package_init_fails(layers: ModuleType, tmp_path: Path) -> None:
    # high/__init__ imports c; c importing a name from the package closes the circle
    pkg = make_package(tmp_path, {**CLEAN, "high/c.py": "from logstream.high import C\n"})
    assert layers.check(pkg, rules(layers)) == [
        "logstream/high: import circle logstream.high -> logstream.high.c -> logstream.high"
    ]


def test_a_private_name_from_another_module_fails(layers: ModuleType, tmp_path: Path) -> None:
    pkg = make_package(
        tmp_path, {**CLEAN, "low/b.py": "from logstream.low.a import _helper, __version__\n"}
    )
    assert layers.check(pkg, rules(layers)) == [
        "logstream/low/b.py:1: imports the private name _helper from logstream.low.a"
    ]


def test_known_exceptions_pass_and_stale_ones_fail(layers: ModuleType, tmp_path: Path) -> None:
    pkg = make_package(tmp_path, {**CLEAN, "low/b.py": "from logstream.low.a import _helper\n"})
    known = {"logstream/low/b.py: imports the private name _helper from logstream.low.a": "x"}
    assert layers.check(pkg, rules(layers, known)) == []
    clean = make_package(tmp_path / "clean", CLEAN)
    assert layers.check(clean, rules(layers, known)) == [
        "fixed, remove it from KNOWN: "
        "logstream/low/b.py: imports the private name _helper from logstream.low.a"
    ]


def test_every_package_of_the_tree_is_in_the_map(layers: ModuleType) -> None:
    units = {
        p.name
        for p in (ROOT / "logstream").iterdir()
        if p.is_dir() and (p / "__init__.py").exists()
    }
    assert units <= set(layers.ALLOWED)
    assert {"cli", "testing", "replay"} <= set(layers.ALLOWED)
