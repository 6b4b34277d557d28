"""Damage harness: seeded damage to a data directory, then every read path, then a verdict.

Each case copies a reference data directory (one topic, several sealed segments and a
parked active one after a clean close, idempotent batches so a producer-state snapshot
exists), damages it one way, then opens it writable (``LogManager``: what the broker's
Fetch and Subscribe read through) and read-only (``DirectorySnapshot``), reads every
offset, and decodes each answer the way the Consumer does (``decode_until_damage``: CRC
and the framing rule). Kinds of damage (seeded, uniform over kinds):

* a bit flip in a segment's data: in the base offset, the batch length, the rest of the
  header (under the CRC) or the record section of a random batch;
* a torn tail: the last segment cut at a random byte;
* a crash (no clean-shutdown marker) with a torn last batch (garbage from a random byte of
  it on), or with two adjacent damaged batches of the last segment that whole batches
  follow: recovery must cut the first and keep the second (its records refused by name,
  its end kept);
* a bit flip in an offset index, a time index, the topic metadata, the log-start
  checkpoint, the producer-state snapshot or the clean-shutdown marker;
* a deleted file: an index, a time index, the topic metadata, the marker, the checkpoint,
  the snapshot, or a whole middle segment.

Verdict of a case (one of):

* ``served``: every offset served, each with its reference value, nothing logged;
* ``refused``: the open refused with a named error, or some reads raised a named error
  (CORRUPT_MESSAGE...), and everything served matches the reference;
* ``repaired``: storage logged a warning or error (a rebuilt index, a cut tail, a restored
  topic) and everything served matches the reference;
* ``SILENT``: a record served with a wrong offset or value, offsets missing with no
  error and nothing logged, or a stalled reader (a read below the end that gives
  nothing); ``CRASH``: an unnamed exception; ``DROPPED``: an open cut whole batches that
  followed the damage (the log ends before them: they are gone, their offsets given out
  again). All three are failures.

Run: ``python benchmarks/damage_harness.py [--cases 400] [--seed 1]``; prints the counts
per verdict and per kind, and exits 1 on any SILENT or CRASH case. ``tests/storage/
test_damage_harness.py`` runs a bounded number of cases in ``make test``.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import random
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logstream.client.chunks import decode_until_damage
from logstream.codec import encode_batch
from logstream.errors import CorruptRecordError, LogstreamError
from logstream.storage import LogManager
from logstream.storage.snapshot import DirectorySnapshot

TOPIC = "t"
BATCHES = 40
PRODUCER_ID = 7

Reference = dict[int, bytes]


def build_reference(path: Path) -> Reference:
    """The reference data directory at ``path``; returns offset -> value."""
    ref: Reference = {}
    with LogManager.open(path, prefault_pages=False) as mgr:
        mgr.create_topic(TOPIC, 1, config={"segment_bytes": 2048})
        log = mgr.get_log(TOPIC, 0)
        seq = 0
        for i in range(BATCHES):
            n = 1 + i % 4
            values = [
                b"v%d-%d-" % (i, k) + bytes([65 + (i + k) % 26]) * (20 + i % 7) for k in range(n)
            ]
            batch = encode_batch(
                values, producer_id=PRODUCER_ID, producer_epoch=0, base_sequence=seq
            )
            seq += n
            base = log.append(batch).base_offset
            for k, v in enumerate(values):
                ref[base + k] = v
    return ref


# -- damage -------------------------------------------------------------------------------


def _flip(path: Path, pos: int, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    if not data:
        return f"{path.name}: empty, nothing to flip"
    pos = min(max(pos, 0), len(data) - 1)
    bit = rng.randrange(8)
    data[pos] ^= 1 << bit
    path.write_bytes(bytes(data))
    return f"{path.name}: bit {bit} of byte {pos}"


def _batch_starts(path: Path) -> list[int]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos + 12 <= len(data):
        length = struct.unpack_from("<i", data, pos + 8)[0]
        if length < 72:
            break
        out.append(pos)
        pos += length
    return out


def _segments(part: Path) -> list[Path]:
    return sorted(part.glob("*.log"))


def _pick(rng: random.Random, paths: list[Path]) -> Path | None:
    return rng.choice(paths) if paths else None


def _garble(path: Path, start: int, stop: int, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    for pos in range(start, min(stop, len(data))):
        data[pos] ^= rng.randint(1, 255)
    path.write_bytes(bytes(data))


def _crash(root: Path, seg: Path, kind: str, rng: random.Random) -> tuple[str, bool]:
    """A crashed directory (no marker) with its last segment damaged; returns (detail,
    whether whole batches follow the damage)."""
    (root / ".clean-shutdown").unlink(missing_ok=True)
    starts = _batch_starts(seg)
    if not starts:
        return f"{seg.name}: no batch", False
    if kind == "crashed-torn-tail":
        end = starts[-1] + struct.unpack_from("<i", seg.read_bytes(), starts[-1] + 8)[0]
        at = rng.randrange(starts[-1], end)
        _garble(seg, at, end, rng)
        return f"{seg.name}: last batch garbled from byte {at}", False
    if len(starts) < 3:
        return f"{seg.name}: too few batches", False
    k = rng.randrange(0, len(starts) - 2)
    for i in (k, k + 1):  # a few bytes of each record section: the CRC fails
        at = starts[i] + 72 + rng.randrange(0, 8)
        _garble(seg, at, at + 2, rng)
    return f"{seg.name}: batches {k} and {k + 1} of {len(starts)} garbled", True


def damage(
    root: Path, rng: random.Random, kinds: Sequence[str] | None = None
) -> tuple[str, str, bool]:
    """Damage the data directory at ``root`` one way (of ``kinds``, default all); returns
    (kind, detail, whether whole batches follow the damage: an open must keep them)."""
    part = root / f"{TOPIC}-0"
    segs = _segments(part)
    kind = rng.choice(kinds or KINDS)
    if kind.startswith("crashed-"):
        detail, keep = _crash(root, segs[-1], kind, rng)
        return kind, detail, keep
    kind_, detail = _damage_one(root, part, segs, kind, rng)
    return kind_, detail, False


def _damage_one(
    root: Path, part: Path, segs: list[Path], kind: str, rng: random.Random
) -> tuple[str, str]:
    if kind.startswith("segment-"):
        seg = rng.choice(segs)
        starts = _batch_starts(seg)
        if not starts:
            return kind, "no batch"
        at = rng.choice(starts)
        region = kind.removeprefix("segment-")
        offset = {
            "base-offset": rng.randrange(0, 8),
            "batch-length": rng.randrange(8, 12),
            "header": rng.randrange(12, 72),
            "records": rng.randrange(72, 72 + 40),
        }[region]
        return kind, _flip(seg, at + offset, rng)
    if kind == "torn-tail":
        seg = segs[-1]
        size = len(_batch_starts(seg)) and seg.stat().st_size
        cut = rng.randrange(0, max(size, 1))
        with open(seg, "r+b") as f:
            f.truncate(cut)
        return kind, f"{seg.name} cut at {cut}"
    if kind.startswith("flip-"):
        target = _file_for(kind.removeprefix("flip-"), root, part, rng)
        if target is None or not target.exists():
            return kind, "file absent"
        return kind, _flip(target, rng.randrange(max(target.stat().st_size, 1)), rng)
    if kind.startswith("delete-"):
        what = kind.removeprefix("delete-")
        if what == "middle-segment":
            if len(segs) < 3:
                return kind, "too few segments"
            seg = segs[len(segs) // 2]
            for suffix in (".log", ".index", ".timeindex"):
                seg.with_suffix(suffix).unlink(missing_ok=True)
            return kind, seg.name
        target = _file_for(what, root, part, rng)
        if target is None or not target.exists():
            return kind, "file absent"
        target.unlink()
        return kind, target.name
    raise AssertionError(kind)


def _file_for(what: str, root: Path, part: Path, rng: random.Random) -> Path | None:
    return {
        "index": lambda: _pick(rng, sorted(part.glob("*.index"))),
        "timeindex": lambda: _pick(rng, sorted(part.glob("*.timeindex"))),
        "meta": lambda: root / "meta" / f"{TOPIC}.json",
        "checkpoint": lambda: part / "log-start-offset",
        "producer-state": lambda: part / "producer-state.json",
        "marker": lambda: root / ".clean-shutdown",
    }[what]()


KINDS = (
    "segment-base-offset",
    "segment-batch-length",
    "segment-header",
    "segment-records",
    "torn-tail",
    "flip-index",
    "flip-timeindex",
    "flip-meta",
    "flip-checkpoint",
    "flip-producer-state",
    "flip-marker",
    "delete-index",
    "delete-timeindex",
    "delete-meta",
    "delete-marker",
    "delete-checkpoint",
    "delete-producer-state",
    "delete-middle-segment",
    "crashed-torn-tail",
    "crashed-adjacent-damage",
)


# -- reading and the verdict ------------------------------------------------------------

FAILURES = ("SILENT", "CRASH", "DROPPED")


@dataclass
class Outcome:
    kind: str
    detail: str
    verdict: str
    why: str = ""


class Stalled(Exception):
    """A read below the log end answered nothing new: a reader would wait for ever."""


class _Logged(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def read_all(
    read: Callable[[int], bytes], start: int, end: int, bases: list[int]
) -> tuple[dict[int, bytes], list[tuple[int, int | None]]]:
    """Read [start, end) as a consumer would; returns (served offset -> value, refused
    ranges). After a refusal the reader skips to the end of the named range, or to the
    next segment when the range is open."""
    served: dict[int, bytes] = {}
    refused: list[tuple[int, int | None]] = []
    pos = start
    while pos < end:
        try:
            data = read(pos)
            chunks, problem = decode_until_damage(TOPIC, 0, 0, data, pos, verify=True)
        except CorruptRecordError as exc:
            chunks, problem = [], exc
            problem.first_offset = pos if exc.first_offset is None else exc.first_offset
        for c in chunks:
            for r in c.take_records(c.remaining):
                served[r.offset] = r.value if r.value is not None else b""
                pos = r.offset + 1
        if problem is not None:
            first = problem.first_offset if problem.first_offset is not None else pos
            last = problem.last_offset
            refused.append((first, last))
            nxt = (
                last + 1
                if last is not None and last >= first
                else min([b for b in bases if b > first] or [end])
            )
            pos = max(pos, nxt, first + 1)
        elif not chunks:
            raise Stalled(f"a read at {pos} below the end {end} gave no record and no error")
    return served, refused


def _reader(log: Any) -> Callable[[int], bytes]:
    return lambda offset: bytes(log.read(offset, 4096))


def evaluate(root: Path, ref: Reference, *, keep_end: bool = False) -> tuple[str, str]:
    """Open ``root`` both ways and read everything; the verdict and why. ``keep_end``:
    whole batches follow the damage, so each open must end where the reference ends."""
    handler = _Logged()
    logger = logging.getLogger("logstream")
    logger.addHandler(handler)
    refused_any = False
    try:
        for opener in ("writable", "read-only"):
            try:
                if opener == "writable":
                    mgr = LogManager.open(root, prefault_pages=False)
                    closer: Callable[[], None] = mgr.close
                    topics = mgr.topics()
                    log = mgr.get_log(TOPIC, 0) if TOPIC in topics else None
                else:
                    snap = DirectorySnapshot.open(root)
                    closer = snap.close
                    log = snap.get_log(TOPIC, 0) if TOPIC in snap.topics() else None
            except LogstreamError as exc:
                if exc.name == "UNKNOWN_SERVER_ERROR":
                    return "CRASH", f"{opener} open: {exc}"
                refused_any = True
                continue
            try:
                if log is None:
                    if not handler.messages:
                        return "SILENT", f"{opener}: the topic vanished without a word"
                    continue
                bases = [s.base_offset for s in log._segments]
                start, end = log.log_start_offset, log.log_end_offset
                if keep_end and end < max(ref) + 1:
                    return "DROPPED", (
                        f"{opener}: the log ends at {end}, before whole batches up to {max(ref)}"
                    )
                served, refused = read_all(_reader(log), start, end, bases)
            finally:
                closer()
            refused_any = refused_any or bool(refused)
            for off, value in served.items():
                if ref.get(off) != value:
                    return "SILENT", f"{opener}: offset {off} served {value[:20]!r}"
            missing = [
                o
                for o in ref
                if start <= o < end
                and o not in served
                and not any(a <= o and (b is None or o <= b) for a, b in refused)
            ]
            lost = [o for o in ref if o not in served and not (start <= o < end)]
            if (missing or lost) and not handler.messages and not refused:
                return "SILENT", (
                    f"{opener}: offsets {(missing or lost)[:5]} missing, nothing said"
                )
    except Stalled as exc:
        return "SILENT", str(exc)
    except LogstreamError as exc:
        return "CRASH", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # an unnamed failure is what the harness looks for
        return "CRASH", f"{type(exc).__name__}: {exc}"
    finally:
        logger.removeHandler(handler)
    if refused_any:
        return "refused", ""
    if handler.messages:
        return "repaired", handler.messages[0][:120]
    return "served", ""


def run(cases: int, seed: int, work: Path, kinds: Sequence[str] | None = None) -> list[Outcome]:
    reference_dir = work / "reference"
    ref = build_reference(reference_dir)
    rng = random.Random(seed)
    out: list[Outcome] = []
    for i in range(cases):
        case_dir = work / f"case-{i}"
        shutil.copytree(reference_dir, case_dir)
        kind, detail, keep_end = damage(case_dir, rng, kinds)
        verdict, why = evaluate(case_dir, ref, keep_end=keep_end)
        out.append(Outcome(kind, detail, verdict, why))
        shutil.rmtree(case_dir, ignore_errors=True)
    return out


def summary(outcomes: list[Outcome]) -> dict[str, object]:
    by_verdict = collections.Counter(o.verdict for o in outcomes)
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for o in outcomes:
        by_kind[o.kind][o.verdict] += 1
    return {
        "cases": len(outcomes),
        "verdicts": dict(sorted(by_verdict.items())),
        "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "failures": [o.__dict__ for o in outcomes if o.verdict in FAILURES],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the summary here")
    args = ap.parse_args()
    logging.getLogger("logstream").setLevel(logging.WARNING)
    logging.getLogger("logstream").propagate = False
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="damage-") as tmp:
        outcomes = run(args.cases, args.seed, Path(tmp))
    result = summary(outcomes)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
