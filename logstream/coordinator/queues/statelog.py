"""The byte format of a queue group's state log, and the interfaces it is written through.

A queue group persists every state change as one small binary record; the records of one
group go, in order, to an internal topic (one key per group, so they stay ordered) through
a :class:`StateLogWriter`. At start-up :mod:`.recovery` replays them. Records are grouped:
``append`` takes a list and makes it durable as one unit (one batch of the internal topic:
after a crash it is all there or all gone), which is the group commit: a fetch or an ack
request costs one append, whatever number of records it touched.

Every record starts with a ``u8`` type; all integers are little-endian. One precompiled
``struct.Struct`` per record type gives its fixed part; variable parts follow it::

    SETTINGS (1)   u8 type, i64 lease_ms, u16 max_deliveries, i64 backoff_initial_ms,
                   i64 backoff_max_ms, u32 window_size, u8 flags (bit0 key_ordered,
                   bit1 auto_ack, bit2 drop expired), i64 start (-2 earliest, -1 latest,
                   else a timestamp), u16 length + dead-letter topic (UTF-8, empty = default)
    PARTITION (2)  u8 type, u32 pid, i32 partition, i64 start_offset,
                   u16 length + topic (UTF-8), [i64 since_ms]   a partition joins the group
                   as `pid` (again: its topic was deleted, start over); since_ms, when
                   present and > 0: dead letters of the partition written at or before
                   it are a deleted topic's, not this one's (absent: 0)
    ADMIT (3)      u8 type, u32 pid, i64 first_offset, u32 count, u8 flags, then one array
                   of `count` values per flag bit set, in bit order:
                   bit0 key hash u64[] and keyed u8[]; bit1 deliver_at_ms i64[];
                   bit2 expires_at_ms i64[]; bit3 timestamp_ms i64[]
    ACQUIRE (4)    u8 type, u32 pid, u8 auto_ack, u32 runs, RUN[]   delivery count + 1
    ACK (5)        u8 type, u32 pid, u32 runs, RUN[]
    NACK (6)       u8 type, u32 pid, i64 due_ms, u32 runs, RUN[]    available again at due_ms
    DEAD (7)       u8 type, u32 pid, u8 reason, u32 runs, RUN[]     in the dead-letter topic
    CHECKPOINT_BEGIN (8)  u8 type, u64 sequence
    WINDOW (9)     u8 type, u32 pid, i64 start_offset, i64 end_offset, u64 acked, u64 dead,
                   u64 dropped, u64 redelivered, [u64 expired, [u64 lost]]   (counters since
                   the group was created; a tail counter absent in records written before it
                   existed reads as 0)
    WINDOW_ROWS (10) u8 type, u32 pid, u32 rows, then columns of `rows` values each:
                   offset i64, state u8, deliveries u16, due_ms i64, key u64, keyed u8,
                   expires_ms i64, reason u8, ts_ms i64
    CHECKPOINT_END (11)   u8 type, u64 sequence, u32 partitions
    SKIP (12)      u8 type, u32 pid, i64 log_start, u32 runs, RUN[]   retention deleted
                   the records below log_start: the RUN offsets (waiting in the window)
                   are lost, and a window ending below log_start jumps there

    RUN = i64 first_offset, u32 length       (12 bytes: consecutive offsets)

A checkpoint is BEGIN, SETTINGS, then per partition PARTITION, WINDOW and WINDOW_ROWS
(at most :data:`ROWS_PER_RECORD` rows each), then END with the same sequence, in
consecutive ``append`` units (:meth:`StateLogWriter.append_checkpoint`: one, unless the
checkpoint is larger than a unit may be). Replay starts over at every complete checkpoint,
so everything before the latest one may be deleted. A BEGIN whose END never arrived (a
torn checkpoint: a crash between its units) is ignored and the records before it stay
authoritative.
Leases are not persisted: after a restart every lease is void. Reason texts are not kept.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from logstream.coordinator.queues.results import from_runs, runs
from logstream.coordinator.queues.settings import QueueSettings

T_SETTINGS = 1
T_PARTITION = 2
T_ADMIT = 3
T_ACQUIRE = 4
T_ACK = 5
T_NACK = 6
T_DEAD = 7
T_CHECKPOINT_BEGIN = 8
T_WINDOW = 9
T_WINDOW_ROWS = 10
T_CHECKPOINT_END = 11
T_SKIP = 12

SETTINGS = struct.Struct("<BqHqqIBqH")
PARTITION = struct.Struct("<BIiqH")
PARTITION_SINCE = struct.Struct("<q")
ADMIT = struct.Struct("<BIqIB")
ACQUIRE = struct.Struct("<BIBI")
ACK = struct.Struct("<BII")
NACK = struct.Struct("<BIqI")
DEAD = struct.Struct("<BIBI")
CHECKPOINT_BEGIN = struct.Struct("<BQ")
WINDOW = struct.Struct("<BIqqQQQQ")
WINDOW_EXPIRED = struct.Struct("<Q")  # optional tail of WINDOW (absent in older logs)
WINDOW_LOST = struct.Struct("<Q")  # optional tail after ``expired`` (absent in older logs)
WINDOW_ROWS = struct.Struct("<BII")
CHECKPOINT_END = struct.Struct("<BQI")
SKIP = struct.Struct("<BIqI")
RUN = np.dtype([("first", "<i8"), ("length", "<u4")])

ADMIT_KEYS = 0x01
ADMIT_DELIVER_AT = 0x02
ADMIT_EXPIRES = 0x04
ADMIT_TIMESTAMPS = 0x08

SETTING_KEY_ORDERED = 0x01
SETTING_AUTO_ACK = 0x02
SETTING_DROP_EXPIRED = 0x04

ROWS_PER_RECORD = 4096
ROW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("state", "<u1"),
    ("deliveries", "<u2"),
    ("due_ms", "<i8"),
    ("key", "<u8"),
    ("keyed", "<u1"),
    ("expires_ms", "<i8"),
    ("reason", "<u1"),
    ("ts_ms", "<i8"),
)


class StateLogWriter(Protocol):
    """Where a queue group's state records go (an internal topic, or memory in tests)."""

    def append(self, records: Sequence[bytes]) -> None:
        """Make ``records`` durable, in order, as one unit: after a crash all of them are
        in the log or none is. Raises on failure (then none was written)."""
        ...

    def append_checkpoint(self, units: Sequence[Sequence[bytes]]) -> None:
        """Append ``units`` (a complete checkpoint, BEGIN in the first and END in the last),
        each as :meth:`append` does, in order; then records before the first may go."""
        ...


def encode_settings(s: QueueSettings) -> bytes:
    flags = (
        (SETTING_KEY_ORDERED if s.key_ordered else 0)
        | (SETTING_AUTO_ACK if s.auto_ack else 0)
        | (SETTING_DROP_EXPIRED if s.expired_action == "drop" else 0)
    )
    dlq = s.dead_letter_topic.encode()
    return (
        SETTINGS.pack(
            T_SETTINGS, s.lease_ms, s.max_deliveries, s.backoff_initial_ms, s.backoff_max_ms,
            s.window_size, flags, s.start_code, len(dlq),
        )
        + dlq
    )  # fmt: skip


def decode_settings(rec: bytes) -> QueueSettings:
    _, lease, max_d, b_init, b_max, window, flags, start, n = SETTINGS.unpack_from(rec)
    return QueueSettings(
        lease_ms=lease,
        max_deliveries=max_d,
        backoff_initial_ms=b_init,
        backoff_max_ms=b_max,
        dead_letter_topic=rec[SETTINGS.size : SETTINGS.size + n].decode(),
        key_ordered=bool(flags & SETTING_KEY_ORDERED),
        auto_ack=bool(flags & SETTING_AUTO_ACK),
        window_size=window,
        start=QueueSettings.start_from_code(start),
        expired_action="drop" if flags & SETTING_DROP_EXPIRED else "dead-letter",
    )


def encode_partition(
    pid: int, topic: str, partition: int, start_offset: int, since_ms: int = 0
) -> bytes:
    name = topic.encode()
    rec = PARTITION.pack(T_PARTITION, pid, partition, start_offset, len(name)) + name
    return rec + PARTITION_SINCE.pack(since_ms) if since_ms > 0 else rec


def decode_partition(rec: bytes) -> tuple[int, str, int, int]:
    """(pid, topic, partition, start_offset)."""
    _, pid, partition, start, n = PARTITION.unpack_from(rec)
    return pid, rec[PARTITION.size : PARTITION.size + n].decode(), partition, start


def partition_since(rec: bytes) -> int:
    """A PARTITION record's since_ms (0 when it has none: written before the field, or
    the partition's first start)."""
    end = PARTITION.size + PARTITION.unpack_from(rec)[4]
    return PARTITION_SINCE.unpack_from(rec, end)[0] if len(rec) >= end + 8 else 0


AdmitArrays = dict[str, np.ndarray]


def encode_admit(pid: int, first_offset: int, count: int, arrays: AdmitArrays) -> bytes:
    """``arrays`` may hold ``keys`` + ``keyed``, ``deliver_at_ms``, ``expires_at_ms``,
    ``ts_ms`` (each at least ``count`` long); absent ones are not written."""
    flags = 0
    parts: list[bytes] = []
    if "keys" in arrays:
        flags |= ADMIT_KEYS
        keyed = arrays.get("keyed")
        parts.append(np.asarray(arrays["keys"][:count], "<u8").tobytes())
        parts.append(
            np.ones(count, "<u1").tobytes()
            if keyed is None
            else np.asarray(keyed[:count], "<u1").tobytes()
        )
    for bit, name in ((ADMIT_DELIVER_AT, "deliver_at_ms"), (ADMIT_EXPIRES, "expires_at_ms")):
        if name in arrays:
            flags |= bit
            parts.append(np.asarray(arrays[name][:count], "<i8").tobytes())
    if "ts_ms" in arrays:
        flags |= ADMIT_TIMESTAMPS
        parts.append(np.asarray(arrays["ts_ms"][:count], "<i8").tobytes())
    return ADMIT.pack(T_ADMIT, pid, first_offset, count, flags) + b"".join(parts)


def decode_admit(rec: bytes) -> tuple[int, int, int, AdmitArrays]:
    """(pid, first_offset, count, arrays) as given to :func:`encode_admit`."""
    _, pid, first, count, flags = ADMIT.unpack_from(rec)
    pos = ADMIT.size
    out: AdmitArrays = {}

    def take(dtype: str) -> np.ndarray:
        nonlocal pos
        arr = np.frombuffer(rec, dtype, count, pos)
        pos += arr.nbytes
        return arr

    if flags & ADMIT_KEYS:
        out["keys"] = take("<u8")
        out["keyed"] = take("<u1")
    if flags & ADMIT_DELIVER_AT:
        out["deliver_at_ms"] = take("<i8")
    if flags & ADMIT_EXPIRES:
        out["expires_at_ms"] = take("<i8")
    if flags & ADMIT_TIMESTAMPS:
        out["ts_ms"] = take("<i8")
    return pid, first, count, out


_ONE_RUN = struct.Struct("<qI")  # one RUN entry, for the one-offset case
assert _ONE_RUN.size == RUN.itemsize


def _runs_bytes(offsets: np.ndarray) -> tuple[int, bytes]:
    if len(offsets) == 1:  # a request/reply's usual acquire and ack: no numpy round trip
        return 1, _ONE_RUN.pack(int(offsets[0]), 1)
    firsts, lengths = runs(offsets)
    table = np.empty(len(firsts), RUN)
    table["first"] = firsts
    table["length"] = lengths
    return len(firsts), table.tobytes()


def _offsets_at(rec: bytes, pos: int, n_runs: int) -> np.ndarray:
    table = np.frombuffer(rec, RUN, n_runs, pos)
    return from_runs(table["first"], table["length"])


def encode_acquire(pid: int, offsets: np.ndarray, auto_ack: bool) -> bytes:
    n, body = _runs_bytes(offsets)
    return ACQUIRE.pack(T_ACQUIRE, pid, int(auto_ack), n) + body


def encode_ack(pid: int, offsets: np.ndarray) -> bytes:
    n, body = _runs_bytes(offsets)
    return ACK.pack(T_ACK, pid, n) + body


def encode_nack(pid: int, offsets: np.ndarray, due_ms: int) -> bytes:
    n, body = _runs_bytes(offsets)
    return NACK.pack(T_NACK, pid, due_ms, n) + body


def encode_dead(pid: int, offsets: np.ndarray, reason: int) -> bytes:
    n, body = _runs_bytes(offsets)
    return DEAD.pack(T_DEAD, pid, reason, n) + body


def encode_skip(pid: int, log_start: int, lost: np.ndarray) -> bytes:
    n, body = _runs_bytes(lost)
    return SKIP.pack(T_SKIP, pid, log_start, n) + body


def decode_skip(rec: bytes) -> tuple[int, int, np.ndarray]:
    """(pid, log_start, offsets marked lost)."""
    _, pid, log_start, n = SKIP.unpack_from(rec)
    return pid, log_start, _offsets_at(rec, SKIP.size, n)


def decode_change(rec: bytes) -> tuple[int, int, np.ndarray, int]:
    """An ACQUIRE, ACK, NACK or DEAD record as (type, pid, offsets, value), where value
    is auto_ack (ACQUIRE), due_ms (NACK), reason (DEAD) or 0 (ACK)."""
    kind = rec[0]
    if kind == T_ACK:
        _, pid, n = ACK.unpack_from(rec)
        return kind, pid, _offsets_at(rec, ACK.size, n), 0
    layout = {T_ACQUIRE: ACQUIRE, T_NACK: NACK, T_DEAD: DEAD}[kind]
    _, pid, value, n = layout.unpack_from(rec)
    return kind, pid, _offsets_at(rec, layout.size, n), value


def encode_checkpoint_begin(sequence: int) -> bytes:
    return CHECKPOINT_BEGIN.pack(T_CHECKPOINT_BEGIN, sequence)


def encode_checkpoint_end(sequence: int, partitions: int) -> bytes:
    return CHECKPOINT_END.pack(T_CHECKPOINT_END, sequence, partitions)


def encode_window(
    pid: int,
    start_offset: int,
    end_offset: int,
    counters: tuple[int, int, int, int, int, int],
    offsets: np.ndarray,
    rows: dict[str, np.ndarray],
) -> list[bytes]:
    """WINDOW then WINDOW_ROWS records (:data:`ROWS_PER_RECORD` rows at most each)."""
    out = [
        WINDOW.pack(T_WINDOW, pid, start_offset, end_offset, *counters[:4])
        + WINDOW_EXPIRED.pack(counters[4])
        + WINDOW_LOST.pack(counters[5])
    ]
    for lo in range(0, len(offsets), ROWS_PER_RECORD):
        hi = min(lo + ROWS_PER_RECORD, len(offsets))
        parts = [WINDOW_ROWS.pack(T_WINDOW_ROWS, pid, hi - lo)]
        parts.append(np.asarray(offsets[lo:hi], "<i8").tobytes())
        parts += [np.asarray(rows[name][lo:hi], dt).tobytes() for name, dt in ROW_COLUMNS]
        out.append(b"".join(parts))
    return out


def decode_window(
    rec: bytes,
) -> tuple[int, int, int, tuple[int, int, int, int, int, int]]:
    """(pid, start_offset, end_offset, counters): acked, dead, dropped, redelivered,
    expired, lost; a tail counter absent in an older record reads as 0."""
    _, pid, start, end, acked, dead, dropped, redelivered = WINDOW.unpack_from(rec)
    expired = lost = 0
    if len(rec) >= WINDOW.size + WINDOW_EXPIRED.size:
        (expired,) = WINDOW_EXPIRED.unpack_from(rec, WINDOW.size)
    if len(rec) >= WINDOW.size + WINDOW_EXPIRED.size + WINDOW_LOST.size:
        (lost,) = WINDOW_LOST.unpack_from(rec, WINDOW.size + WINDOW_EXPIRED.size)
    return pid, start, end, (acked, dead, dropped, redelivered, expired, lost)


def decode_window_rows(rec: bytes) -> tuple[int, np.ndarray, dict[str, np.ndarray]]:
    """(pid, offsets, rows by column name)."""
    _, pid, n = WINDOW_ROWS.unpack_from(rec)
    pos = WINDOW_ROWS.size
    offsets = np.frombuffer(rec, "<i8", n, pos)
    pos += offsets.nbytes
    rows = {}
    for name, dt in ROW_COLUMNS:
        rows[name] = np.frombuffer(rec, dt, n, pos)
        pos += rows[name].nbytes
    return pid, offsets, rows


def record_types(records: Iterable[bytes]) -> list[int]:
    """The type byte of each record (for tests and tools)."""
    return [r[0] for r in records]
