"""The clean-shutdown marker (Kafka's CleanShutdownFileHandler): ``<data-dir>/.clean-shutdown``.

Present only between a clean ``LogManager.close`` and the next open. Its content is JSON::

    {"version": 1, "untrimmed": {"<topic>-<partition>": [base, size, next_offset, last_batch_pos]}}

one :class:`~.segment.ParkedTail` per partition whose last segment was parked (decision
0011; the key keeps its on-disk name). An empty file means every last segment is sealed.
The marker is written (atomically) only after the final ``syncfs`` of a close succeeded,
and read and removed (durably) at the next open, before any partition is touched, so a
crash after the open recovers every partition.

Concurrency: called by LogManager's open and close only, under its lock.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from logstream.storage import files
from logstream.storage.segment import ParkedTail

log = logging.getLogger("logstream.storage")


def take_marker(data_dir: Path) -> dict[str, ParkedTail] | None:
    """Read and durably remove the marker. Returns the parked tails by partition directory
    name, or None when there was no marker or it is unreadable (recover everything)."""
    marker = data_dir / files.CLEAN_SHUTDOWN_FILE
    if not marker.exists():
        return None
    tails: dict[str, ParkedTail] | None
    try:
        tails = parse_marker(marker.read_bytes())
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("unreadable clean-shutdown marker (%s): recovering every partition", exc)
        tails = None
    with files.storage_errors("removing the clean-shutdown marker"):
        marker.unlink()
        files.fsync_dir(data_dir)
    return tails


def write_marker(data_dir: Path, tails: dict[str, ParkedTail]) -> None:
    """Write the marker atomically (KafkaStorageError if it cannot be written)."""
    files.atomic_write(data_dir / files.CLEAN_SHUTDOWN_FILE, format_marker(tails))


MARKER_VERSION = 1


def format_marker(tails: dict[str, ParkedTail]) -> bytes:
    """The clean-shutdown marker: for every partition whose last segment was parked,
    ``[base_offset, size, next_offset, last_batch_pos]`` under the key ``untrimmed``
    (decision 0011). One file for the whole directory, written after the final syncfs."""
    if not tails:
        return b""
    doc = {"version": MARKER_VERSION, "untrimmed": {k: list(v) for k, v in tails.items()}}
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_marker(data: bytes) -> dict[str, ParkedTail]:
    """Inverse of :func:`format_marker`; an empty marker (older versions, or nothing
    parked) means every segment is trimmed. Raises ValueError on anything else."""
    if not data.strip():
        return {}
    doc = json.loads(data)
    if doc.get("version") != MARKER_VERSION:
        raise ValueError(f"marker version {doc.get('version')!r}")
    tails = doc["untrimmed"]
    out: dict[str, ParkedTail] = {}
    for name, tail in tails.items():
        if not (
            isinstance(tail, list) and len(tail) == 4 and all(isinstance(x, int) for x in tail)
        ):
            raise ValueError(f"bad entry for {name}")
        out[name] = ParkedTail(*tail)
    return out
