"""Producer ids for idempotent producers, never reused across restarts.

State file ``<data-dir>/producer-ids.json`` (JSON, written with storage's ``atomic_write``:
tmp + fsync + rename + fsync of the directory, before an id is handed out). It is not under
``meta/``, where storage keeps one ``<topic>.json`` per topic::

    {"version": 1, "next_id": 1234, "named": {"orders-writer": [17, 3]}}

``next_id`` is the first id never handed out. ``named`` maps a stable producer name to its
id and current epoch: asking again with the same name returns the same id with the epoch
bumped, which fences the previous incarnation (storage rejects its older epoch). When an
epoch would pass int16 the name gets a fresh id at epoch 0.

Crash story: the file is replaced atomically, and saved *before* the answer leaves the
broker, so an id is never handed out twice; a crash between save and answer only wastes one.
Thread-safe (one lock; allocation is rare).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from logstream.storage.files import atomic_write

FILE_NAME = "producer-ids.json"
_MAX_EPOCH = 2**15 - 1


class ProducerIdManager:
    def __init__(self, data_dir: str | Path) -> None:
        self._path = Path(data_dir) / FILE_NAME
        self._lock = threading.Lock()
        self._next_id = 0
        self._named: dict[str, tuple[int, int]] = {}
        if self._path.exists():
            state = json.loads(self._path.read_text())
            self._next_id = int(state["next_id"])
            self._named = {k: (int(v[0]), int(v[1])) for k, v in state.get("named", {}).items()}

    def allocate(self, name: str = "") -> tuple[int, int]:
        """A (producer_id, epoch) pair; persisted before it is returned."""
        with self._lock:
            named = dict(self._named)
            next_id = self._next_id
            current = named.get(name) if name else None
            if current is not None and current[1] < _MAX_EPOCH:
                result = (current[0], current[1] + 1)
            else:
                result = (next_id, 0)
                next_id += 1
            if name:
                named[name] = result
            self._save(next_id, named)
            self._next_id, self._named = next_id, named
            return result

    def _save(self, next_id: int, named: dict[str, tuple[int, int]]) -> None:
        data = json.dumps(
            {"version": 1, "next_id": next_id, "named": {k: list(v) for k, v in named.items()}}
        ).encode()
        atomic_write(self._path, data)  # KafkaStorageError on failure: nothing handed out
