"""Where the ACL rules live: the internal topic ``__acls`` (decision 0033).

One partition, written only by the broker, or by ``logstream acl ... --data-dir D`` while no
broker runs (the data directory's lock keeps the two apart). The topic is created by the
first change, so a broker that never had a rule has no such topic. Clients cannot produce to
it or delete it (internal topic); reading it needs cluster ``describe`` (see
:mod:`.acls`).

Record layout (integers little-endian)::

    key, type 1 (a rule):
        u8   key_type = 1
        then six strings, each u16 length + UTF-8, in this order:
        principal, resource_type, name, pattern, operation, permission
    value of type 1:
        u8   value_version = 1         the rule exists
        null (tombstone)               the rule was removed

    key, type 2 (snapshot): u8 key_type = 2
    value of type 2:
        u8   value_version = 1
        u32  rules                     how many type-1 records follow in the same batch

One change (an add or a remove of any number of rules) is one batch, appended and flushed
(msync of the segment) before the call that made it returns: after a crash, even of the
machine, it is all there or all gone (the batch CRC). Replay reads from the log start in
order; the last record of a key decides; the rules come back in the order they were added.
Unknown key types and value versions are skipped (forward compatibility).

Snapshots keep the topic small. When the records since the last snapshot exceed
``max(SNAPSHOT_MIN_RECORDS, 4 x live rules)``, one batch is appended holding a snapshot
marker followed by every live rule; replay forgets everything before a marker. After the
batch is flushed, the sealed segments below it are deleted. A crash before the deletion
only leaves records replay will override.

An ``acls.json`` file of an older broker (``<data_dir>/security/``, the checksummed document
of decision 0021) is imported once: its rules missing from the topic are appended, then the
file is renamed ``acls.json.migrated``. A crash between the two imports again, adding
nothing twice.

Thread-safety: the :class:`~logstream.broker.security.acls.AclStore` serialises changes;
replay runs once, before the store is shared.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import struct
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple
from pathlib import Path
from typing import Any

from logstream.broker.queue_reads import read_range
from logstream.broker.security.acls import ACL_FIELDS, ACLS_TOPIC, Acl, AclStore
from logstream.broker.security.credentials import SECURITY_DIR
from logstream.broker.security.events import acls_changed
from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.codec import encode_batch, iter_batches
from logstream.errors import (
    InvalidConfigError,
    InvalidRequestError,
    LogstreamError,
    TopicAlreadyExistsError,
)
from logstream.storage import LogManager, PartitionLog, files

log = logging.getLogger("logstream.broker.security")

ACLS_TOPIC_CONFIG: dict[str, int | str] = {
    "retention_ms": -1,  # snapshots delete segments, never time or size
    "retention_bytes": -1,
    # a snapshot is one batch holding every rule (about 60 bytes each): 16 MiB is ~250k rules
    "segment_bytes": 16 * 1024 * 1024,
    "max_batch_bytes": 16 * 1024 * 1024,
}
LEGACY_FILE = "acls.json"
MIGRATED_SUFFIX = ".migrated"

KEY_RULE = 1
KEY_SNAPSHOT = 2
VALUE_VERSION = 1
SNAPSHOT_MIN_RECORDS = 1_000
SNAPSHOT_LIVE_FACTOR = 4

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_SNAPSHOT_VALUE = struct.Struct(
    "<"
    "B"  # value_version
    "I"  # rules that follow in the batch
)
_PRESENT = _U8.pack(VALUE_VERSION)


def encode_rule_key(acl: Acl) -> bytes:
    parts = [_U8.pack(KEY_RULE)]
    for text in astuple(acl):
        raw = text.encode("utf-8")
        parts += (_U16.pack(len(raw)), raw)
    return b"".join(parts)


def decode_rule_key(key: bytes) -> Acl | None:
    """The rule a type-1 key names; None for another key type, or a key this version
    cannot read as a valid rule (skipped on replay: the batch CRC passed, so it was
    written that way, by a later version or a bug, and is not damage)."""
    if not key or key[0] != KEY_RULE:
        return None
    texts, pos = [], 1
    try:
        for _ in ACL_FIELDS:
            (n,) = _U16.unpack_from(key, pos)
            pos += 2
            if pos + n > len(key):
                return None
            texts.append(key[pos : pos + n].decode("utf-8"))
            pos += n
        return Acl.checked(*texts)
    except (struct.error, UnicodeDecodeError, InvalidRequestError):
        return None


class AclTopic:
    """The :class:`~logstream.broker.security.acls.AclJournal` over ``__acls``."""

    def __init__(self, manager: LogManager, clock: Clock = SYSTEM_CLOCK) -> None:
        self._manager = manager
        self._clock = clock
        self._log: PartitionLog | None = (
            manager.get_log(ACLS_TOPIC, 0) if ACLS_TOPIC in manager.topics() else None
        )
        self._since_snapshot = 0
        self._live = 0

    def _target(self) -> PartitionLog:
        if self._log is None:
            try:
                self._manager.create_topic(ACLS_TOPIC, 1, dict(ACLS_TOPIC_CONFIG))
            except TopicAlreadyExistsError:
                pass
            self._log = self._manager.get_log(ACLS_TOPIC, 0)
        return self._log

    def replay(self) -> list[Acl]:
        rules: dict[Acl, None] = {}
        plog = self._log
        if plog is not None:
            start = plog.log_start_offset
            for data in read_range(plog, start, plog.log_end_offset):
                for batch in iter_batches(data):
                    keys, values = batch.key_list(), batch.value_list()
                    for off, k, v in zip(batch.offsets.tolist(), keys, values, strict=True):
                        if off < start or not k:
                            continue
                        self._since_snapshot += 1
                        if k[0] == KEY_SNAPSHOT and v and v[0] == VALUE_VERSION:
                            rules.clear()
                            self._since_snapshot = 0
                            continue
                        acl = decode_rule_key(k)
                        if acl is None:
                            continue
                        if v is None:
                            rules.pop(acl, None)
                        elif v[:1] == _PRESENT:
                            rules.pop(acl, None)  # a rule added again goes to the end
                            rules[acl] = None
        self._live = len(rules)
        return list(rules)

    def append(self, added: Sequence[Acl], removed: Sequence[Acl]) -> None:
        keys = [encode_rule_key(a) for a in (*added, *removed)]
        values: list[bytes | None] = [_PRESENT] * len(added) + [None] * len(removed)
        plog = self._target()
        plog.append(encode_batch(values, keys=keys, timestamps=self._clock.now_ms()))
        plog.flush()
        self._since_snapshot += len(keys)
        self._live += len(added) - len(removed)

    def compact(self, rules: Sequence[Acl]) -> int:
        """Write a snapshot of ``rules`` (every live rule) when one is due; returns how many
        segments went."""
        if self._since_snapshot <= max(SNAPSHOT_MIN_RECORDS, SNAPSHOT_LIVE_FACTOR * self._live):
            return 0
        try:
            return self.snapshot(rules)
        except LogstreamError as exc:  # the change itself is durable; history stays longer
            log.warning("ACL snapshot failed, trying again after the next change: %s", exc)
            return 0

    def snapshot(self, rules: Sequence[Acl]) -> int:
        """Re-state ``rules`` after a marker, then delete the sealed segments below;
        returns how many segments went."""
        keys = [_U8.pack(KEY_SNAPSHOT), *(encode_rule_key(a) for a in rules)]
        values = [_SNAPSHOT_VALUE.pack(VALUE_VERSION, len(rules)), *([_PRESENT] * len(rules))]
        plog = self._target()
        base = plog.append(encode_batch(values, keys=keys, timestamps=self._clock.now_ms()))
        plog.flush()
        self._since_snapshot, self._live = 0, len(rules)
        return int(plog.delete_segments_before(base.base_offset))


def open_acl_store(
    manager: LogManager, super_users: frozenset[str] = frozenset(), clock: Clock = SYSTEM_CLOCK
) -> AclStore:
    """The store over ``manager``'s ``__acls``, after importing an older ``acls.json``."""
    journal = AclTopic(manager, clock)
    store = AclStore(journal, super_users)
    legacy = Path(manager.data_dir) / SECURITY_DIR / LEGACY_FILE
    if legacy.exists():
        imported = store.add(read_legacy_file(legacy))
        acls_changed(imported, [], "migration")
        done = legacy.with_name(LEGACY_FILE + MIGRATED_SUFFIX)
        os.replace(legacy, done)
        files.fsync_dir(legacy.parent)
        log.info("ACL file %s imported into %s (%d rules); kept as %s",
                 legacy, ACLS_TOPIC, len(imported), done.name)  # fmt: skip
    return store


@contextmanager
def offline_acl_store(data_dir: Path, *, create: bool = True) -> Iterator[AclStore]:
    """The rules of a data directory no broker has open (``logstream acl --data-dir``);
    raises KafkaStorageError while a broker holds it, InvalidConfigError when it does not
    exist and ``create`` is false (a mistyped path is not made into an empty broker)."""
    if not create and not data_dir.is_dir():
        raise InvalidConfigError(f"no data directory at {data_dir}")
    # keep the directory's mode: the broker may run with its own data_dir_mode
    mode = stat.S_IMODE(data_dir.stat().st_mode) if data_dir.is_dir() else files.DEFAULT_DIR_MODE
    manager = LogManager.open(data_dir, prefault_pages=False, dir_mode=mode)
    try:
        yield open_acl_store(manager)
    finally:
        manager.close()


def read_legacy_file(path: Path) -> list[Acl]:
    """The rules of an ``acls.json`` written by a broker before ``__acls``."""
    try:
        doc: Any = json.loads(path.read_bytes())
        body = doc["body"]
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        if zlib.crc32(canonical) != doc["crc32"]:
            raise ValueError("checksum mismatch")
        return [Acl.checked(**{k: a[k] for k in ACL_FIELDS}) for a in body["acls"]]
    except (OSError, ValueError, KeyError, TypeError, InvalidRequestError) as exc:
        raise InvalidConfigError(f"ACL file {path} is damaged: {exc}") from exc
