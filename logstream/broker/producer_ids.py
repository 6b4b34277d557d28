"""Producer ids for idempotent producers, never reused across restarts.

``next_id`` is the first id never handed out. A producer *name* maps to an id and its
current epoch: asking again with the same name returns the same id with the epoch bumped,
which fences the previous incarnation (storage rejects its older epoch). When an epoch would
pass int16 the name gets a fresh id at epoch 0.

State file ``<data-dir>/producer-ids.log`` (not under ``meta/``, where storage keeps one
``<topic>.json`` per topic): one record per allocation, appended and fdatasync'ed before
the id leaves the broker, little-endian::

    u32 crc32c(everything after it) | u16 name_len | i64 next_id | i64 producer_id
    | i16 epoch | i64 last_used_ms | name (UTF-8, name_len bytes; 0 for an unnamed id)

Replaying the records in order rebuilds the state (the last record of a name wins, the
largest ``next_id`` wins). A call costs one small append, whatever the number of names.
When the file holds more than ``max(COMPACT_MIN_RECORDS, 4 x live names)`` records it is
rewritten (``atomic_write``) with one record per live name and one carrying ``next_id``.

Bounds: a name is at most ``MAX_PRODUCER_NAME_BYTES`` UTF-8 bytes (InvalidProducerNameError);
a name not asked for during ``expiration_ms`` is forgotten (its next request gets a fresh
id at epoch 0), as is the least recently used name when more than ``max_names`` are live
(logged: that name's old incarnation is no longer fenced).

Crash story: an id is durable before it is answered, so it is never handed out twice. A
torn last record (a crash during the append) was never answered and is cut off at open;
a damaged record followed by others is corruption and stops the open with
KafkaStorageError naming the file. A ``producer-ids.json`` of older versions is read once
and replaced by the log. Thread-safe: one lock around each allocation (they are rare).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
from collections import OrderedDict
from pathlib import Path

from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.codec.crc import crc32c
from logstream.errors import InvalidProducerNameError, KafkaStorageError
from logstream.storage import files

log = logging.getLogger("logstream.broker.producer_ids")

FILE_NAME = "producer-ids.log"
LEGACY_FILE_NAME = "producer-ids.json"
MAX_PRODUCER_NAME_BYTES = 255
COMPACT_MIN_RECORDS = 1024
DEFAULT_EXPIRATION_MS = 7 * 24 * 60 * 60 * 1000  # Kafka's transactional.id.expiration.ms
DEFAULT_MAX_NAMES = 100_000
_MAX_EPOCH = 2**15 - 1
_RECORD = struct.Struct("<IHqqhq")


def _encode(next_id: int, producer_id: int, epoch: int, last_used_ms: int, name: bytes) -> bytes:
    body = _RECORD.pack(0, len(name), next_id, producer_id, epoch, last_used_ms)[4:] + name
    return struct.pack("<I", crc32c(body)) + body


class _Named:
    __slots__ = ("epoch", "last_used_ms", "producer_id")

    def __init__(self, producer_id: int, epoch: int, last_used_ms: int) -> None:
        self.producer_id = producer_id
        self.epoch = epoch
        self.last_used_ms = last_used_ms


class ProducerIdManager:
    def __init__(
        self,
        data_dir: str | Path,
        *,
        clock: Clock = SYSTEM_CLOCK,
        expiration_ms: int = DEFAULT_EXPIRATION_MS,
        max_names: int = DEFAULT_MAX_NAMES,
    ) -> None:
        self._path = Path(data_dir) / FILE_NAME
        self._clock = clock
        self._expiration_ms = expiration_ms
        self._max_names = max_names
        self._lock = threading.Lock()
        self._next_id = 0
        self._named: OrderedDict[str, _Named] = OrderedDict()  # least recently used first
        self._records = 0
        self._size = 0
        self._fd = -1
        with files.storage_errors(f"opening {self._path}"):
            legacy = self._path.with_name(LEGACY_FILE_NAME)
            if self._path.exists():
                self._replay()
            elif legacy.exists():
                self._read_legacy(legacy)
            self._expire(self._clock.now_ms())
            self._evict_beyond_limit()  # evictions are not logged: replay repeats them
            self._compact()  # also creates the file; the legacy one is no longer needed
            files.remove_quietly(legacy)
            self._fd = os.open(self._path, os.O_WRONLY)

    @property
    def named_count(self) -> int:
        return len(self._named)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    @property
    def allocated(self) -> int:
        """Producer ids handed out so far (the next id)."""
        return self._next_id

    def allocate(self, name: str = "") -> tuple[int, int]:
        """A (producer_id, epoch) pair; durable before it is returned."""
        encoded = name.encode()
        if len(encoded) > MAX_PRODUCER_NAME_BYTES:
            raise InvalidProducerNameError(
                f"producer name is {len(encoded)} bytes in UTF-8; the limit is "
                f"{MAX_PRODUCER_NAME_BYTES}"
            )
        with self._lock:
            if self._fd < 0:
                raise KafkaStorageError("the producer id store is closed")
            now = self._clock.now_ms()
            self._expire(now)
            current = self._named.get(name) if name else None
            next_id = self._next_id
            if current is not None and current.epoch < _MAX_EPOCH:
                result = (current.producer_id, current.epoch + 1)
            else:
                result = (next_id, 0)
                next_id += 1
            self._append(_encode(next_id, result[0], result[1], now, encoded))
            self._next_id = next_id
            if name:
                self._named[name] = _Named(result[0], result[1], now)
                self._named.move_to_end(name)
                self._evict_beyond_limit()
            if self._records > max(COMPACT_MIN_RECORDS, 4 * (len(self._named) + 1)):
                self._compact()
            return result

    # -- internals (called with the lock held, or from __init__) --------------------------

    def _append(self, record: bytes) -> None:
        try:
            written = 0
            while written < len(record):
                written += os.pwrite(self._fd, record[written:], self._size + written)
            os.fdatasync(self._fd)
        except OSError as exc:
            # Cut the partial record so the next append does not land after garbage.
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                log.error("cannot cut a failed append off %s", self._path)
            log.error("appending to %s failed: %s", self._path, exc)
            raise KafkaStorageError(f"cannot persist a producer id: {exc.strerror}") from exc
        self._size += len(record)
        self._records += 1

    def _expire(self, now_ms: int) -> None:
        cutoff = now_ms - self._expiration_ms
        while self._named:
            name, entry = next(iter(self._named.items()))
            if entry.last_used_ms > cutoff:
                break
            del self._named[name]

    def _evict_beyond_limit(self) -> None:
        while len(self._named) > self._max_names:
            name, _ = self._named.popitem(last=False)
            log.warning(
                "more than %d producer names: forgetting the least recently used %r (its "
                "next InitProducerId gets a fresh id)",
                self._max_names,
                name[:64],
            )

    def _compact(self) -> None:
        parts = [
            _encode(self._next_id, e.producer_id, e.epoch, e.last_used_ms, n.encode())
            for n, e in self._named.items()
        ]
        parts.append(_encode(self._next_id, -1, -1, 0, b""))
        data = b"".join(parts)
        files.atomic_write(self._path, data)
        if self._fd >= 0:  # the old inode is gone: write to the new file from now on
            os.close(self._fd)
            self._fd = os.open(self._path, os.O_WRONLY)
        self._size = len(data)
        self._records = len(parts)

    def _replay(self) -> None:
        data = self._path.read_bytes()
        pos = 0
        while pos < len(data):
            end = pos + _RECORD.size
            if end <= len(data):
                crc, name_len, next_id, pid, epoch, used = _RECORD.unpack_from(data, pos)
                end += name_len
            if end > len(data):
                log.warning("%s: cutting a torn last record at byte %d", self._path, pos)
                break
            if crc32c(memoryview(data)[pos + 4 : end]) != crc:
                if end == len(data):
                    log.warning("%s: cutting a torn last record at byte %d", self._path, pos)
                    break
                raise KafkaStorageError(
                    f"{self._path} is damaged at byte {pos} (checksum mismatch before the "
                    "last record); refusing to start rather than hand out an id twice"
                )
            self._next_id = max(self._next_id, next_id)
            name = data[end - name_len : end].decode(errors="replace")
            if name:
                self._named[name] = _Named(pid, epoch, used)
                self._named.move_to_end(name)
            pos = end
        # Records are replayed in append order, so the OrderedDict is by last use already.

    def _read_legacy(self, path: Path) -> None:
        now = self._clock.now_ms()
        try:
            state = json.loads(path.read_bytes())
            self._next_id = int(state["next_id"])
            for name, (pid, epoch) in state.get("named", {}).items():
                self._named[str(name)] = _Named(int(pid), int(epoch), now)
        except (ValueError, KeyError, TypeError) as exc:
            raise KafkaStorageError(f"{path} is unreadable ({exc}); refusing to start") from exc
