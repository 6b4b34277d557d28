"""The damage harness (benchmarks/damage_harness.py) in a bounded form: 60 seeded cases of
torn tails, bit flips in every region of segments, indexes and metadata, and deleted
files; each one served correctly, refused with a named error or repaired loudly, never
silently wrong. The full run (400 cases) is ``python benchmarks/damage_harness.py``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import damage_harness  # noqa: E402


def test_sixty_damage_cases_are_never_silently_wrong(tmp_path: Path) -> None:
    outcomes = damage_harness.run(60, seed=13, work=tmp_path)
    result = damage_harness.summary(outcomes)
    assert result["failures"] == [], result["failures"]
    assert {o.verdict for o in outcomes} <= {"served", "refused", "repaired"}
    kinds = {o.kind for o in outcomes}
    assert len(kinds) >= 15, kinds  # the seed reaches (nearly) every kind of damage
    assert {"refused", "repaired"} <= {o.verdict for o in outcomes}


def test_the_harness_sees_wrong_data(tmp_path: Path) -> None:
    """The verdict is not vacuous: a directory whose records differ from the reference is
    SILENT."""
    ref = damage_harness.build_reference(tmp_path / "d")
    wrong = {offset: value + b"!" for offset, value in ref.items()}
    verdict, why = damage_harness.evaluate(tmp_path / "d", wrong)
    assert verdict == "SILENT", why


def test_a_crashed_last_segment_keeps_whole_batches_after_damage(tmp_path: Path) -> None:
    """Crashed directories only: a torn last batch is cut (repaired); two adjacent damaged
    batches with whole ones after them are refused by name and the end kept (before: the
    writable open cut them: DROPPED)."""
    kinds = ("crashed-torn-tail", "crashed-adjacent-damage")
    outcomes = damage_harness.run(12, seed=5, work=tmp_path, kinds=kinds)
    assert damage_harness.summary(outcomes)["failures"] == []
    verdicts = {(o.kind, o.verdict) for o in outcomes if "too few" not in o.detail}
    assert verdicts == {("crashed-torn-tail", "repaired"), ("crashed-adjacent-damage", "refused")}
