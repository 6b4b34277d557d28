"""Pins the public surface and the import rules between layers."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import logstream
from logstream import errors

ROOT = Path(__file__).resolve().parent.parent


def _load_check_layers():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "check_layers", ROOT / "tools" / "check_layers.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # as importlib's recipe does; dataclasses look it up
    spec.loader.exec_module(mod)
    return mod


def test_public_names_are_pinned() -> None:
    assert sorted(logstream.__all__) == sorted(
        [
            "Admin",
            "Consumer",
            "GroupAdmin",
            "GroupMetadata",
            "LogstreamError",
            "OffsetAndMetadata",
            "Producer",
            "QueueConsumer",
            "QueueMessage",
            "Record",
            "RecordMetadata",
            "Reject",
            "Requester",
            "TopicPartition",
            "__version__",
        ]
    )


def test_no_layer_imports_across_its_boundary() -> None:
    assert _load_check_layers().violations() == []


def test_importing_storage_does_not_load_grpc() -> None:
    code = "import sys, logstream.codec, logstream.errors; print('grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_cli_and_the_admin_clients_do_not_load_numpy() -> None:
    """Each CLI call is a new process: admin commands must not pay for the codec (decision
    0044). The lazy package attributes still resolve."""
    code = (
        "import sys, logstream.cli.main\n"
        "from logstream.client import Admin, GroupAdmin\n"
        "from logstream.replay import timespec\n"
        "print('numpy' in sys.modules)\n"
        "from logstream.client import Consumer\n"
        "from logstream.replay import Replay\n"
        "print('numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_lazy_packages_export_every_name_they_list() -> None:
    import logstream.client
    import logstream.replay

    for package in (logstream.client, logstream.replay):
        assert set(package.__all__) <= set(dir(package))
        for name in package.__all__:
            assert getattr(package, name) is not None, name


def test_error_codes_are_unique_and_round_trip() -> None:
    classes = [c for c in errors._all_error_classes() if c is not errors.LogstreamError]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        assert errors.for_code(cls.code) is cls
        assert errors.for_name(cls.name) is cls
    assert errors.for_code(123456) is errors.UnknownServerError
