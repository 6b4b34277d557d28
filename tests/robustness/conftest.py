"""Fixtures for the robustness tests: ``target``, one seeded broker process per module
(see ``robustness_target``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from robustness_target import Target, start_target


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from start_target(tmp_path_factory.mktemp("robustness") / "data")
