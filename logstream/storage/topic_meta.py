"""Topic metadata files (``meta/<topic>.json``): their format, checksum and intent states.

Format (version 2; version 1, the same without ``state`` and ``crc32c``, is still read)::

    {"version": 2, "name": "<topic>", "partitions": N, "config": {<overrides>},
     "state": "ready" | "creating" | "deleting",
     "crc32c": <CRC32C of the canonical JSON of every other field>}

The canonical JSON is ``json.dumps(doc, sort_keys=True, separators=(",", ":"))`` of the
document without ``crc32c``, so the file may be pretty-printed. A file that is not JSON,
whose checksum does not match, whose fields are missing or of the wrong type, or whose
name is not its file's name is a KafkaStorageError naming the file: the open
refuses rather than guessing a topic's partition count or config.

``state`` records an intent that a crash may interrupt (the data directory's rules are in
``manager.py``): a create writes ``creating`` before it makes any partition directory and
``ready`` once all exist; a delete writes ``deleting`` before it removes any. An open that
finds ``creating`` rolls the create back, ``deleting`` finishes the delete.

Pure functions over bytes; thread-safe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from logstream.codec.crc import crc32c
from logstream.errors import KafkaStorageError

META_VERSION: Final = 2
READY: Final = "ready"
CREATING: Final = "creating"
DELETING: Final = "deleting"
_STATES: Final = frozenset({READY, CREATING, DELETING})


@dataclass(frozen=True, slots=True)
class TopicMeta:
    """What one metadata file says."""

    name: str
    partitions: int
    config: dict[str, Any]
    state: str = READY


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def format_meta(meta: TopicMeta) -> bytes:
    """The file's bytes (version 2, with its checksum)."""
    doc: dict[str, Any] = {
        "version": META_VERSION,
        "name": meta.name,
        "partitions": meta.partitions,
        "config": meta.config,
        "state": meta.state,
    }
    doc["crc32c"] = crc32c(_canonical(doc))
    return json.dumps(doc, indent=1).encode()


def parse_meta(path: Path, data: bytes) -> TopicMeta:
    """Parse and verify the bytes of the metadata file ``path`` (named in every error)."""

    def corrupt(why: str) -> KafkaStorageError:
        return KafkaStorageError(
            f"topic metadata {path} is unreadable: {why}; restore it from a backup, or "
            f"move it away to leave the topic's partitions out of this broker"
        )

    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise corrupt(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise corrupt("not a JSON object")
    version = doc.get("version")
    if version == META_VERSION:
        stored = doc.pop("crc32c", None)
        if not isinstance(stored, int) or stored != crc32c(_canonical(doc)):
            raise corrupt("its checksum does not match its content")
    elif version != 1:
        raise corrupt(f"unknown version {version!r}")
    name, partitions = doc.get("name"), doc.get("partitions")
    config, state = doc.get("config", {}), doc.get("state", READY)
    if not isinstance(name, str) or path.name != f"{name}.json":
        raise corrupt(f"it names topic {name!r}")
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise corrupt(f"partitions {partitions!r}")
    if not isinstance(config, dict):
        raise corrupt("config is not an object")
    if state not in _STATES:
        raise corrupt(f"unknown state {state!r}")
    return TopicMeta(name, partitions, config, state)


def read_meta(path: Path) -> TopicMeta:
    """Read and verify one metadata file (KafkaStorageError naming it when it is damaged
    or cannot be read)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KafkaStorageError(f"cannot read topic metadata {path}: {exc}") from exc
    return parse_meta(path, data)
