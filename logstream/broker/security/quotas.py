"""Per-principal quotas: produce bytes/s, fetch bytes/s and requests/s, enforced by delay.

Each (principal, kind) has a virtual clock, ``due``: the moment its traffic so far would
have been sent at exactly the quota rate. A request of ``n`` units moves it by ``n / rate``;
when ``due`` runs ahead of now by more than the burst (``BURST_S`` worth of quota), the
response waits for the difference (Kafka's throttle: nothing is dropped, the client is
answered later and so sends later). The throttle applied is reported in the trailing
metadata ``logstream-throttle-ms`` of unary calls.

What is counted: produce bytes are the decoded request size of Produce / ProduceStream
messages; fetch bytes the serialized size of Fetch / Subscribe answers; requests are calls
plus stream messages. Streams wait before reading the next message (ProduceStream) or
before sending the next answer (Subscribe), so gRPC flow control holds the client back.

File ``<data_dir>/security/quotas.json`` (0600; the checksummed document and
tmp + fsync + rename ritual of ``credentials.json``)::

    {"crc32": ..., "body": {"version": 1, "quotas": {
        "alice": {"produce_bytes_per_s": 1048576, "fetch_bytes_per_s": 0,
                  "requests_per_s": 0}, "*": {...}}}}

``0`` means unlimited; ``*`` is the default for principals without their own entry.
Written by ``logstream quota set`` (offline; the broker reads it at start and on SIGHUP) or
through the broker (``quota set --online``, the Security service's SetQuota: written the
same way and applied at once).

Concurrency: :meth:`Quotas.delay` is called on the loop and from pool threads; one lock.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from logstream.broker.security.credentials import SECURITY_DIR
from logstream.errors import InvalidConfigError, InvalidRequestError
from logstream.storage import files

QUOTAS_FILE = "quotas.json"
KINDS = ("produce_bytes_per_s", "fetch_bytes_per_s", "requests_per_s")
BURST_S = 0.1
MAX_DELAY_S = 30.0
DEFAULT = "*"
THROTTLE_KEY = "logstream-throttle-ms"
MAX_PRINCIPAL_CHARS = 255


@dataclass(frozen=True)
class Quota:
    produce_bytes_per_s: float = 0
    fetch_bytes_per_s: float = 0
    requests_per_s: float = 0

    def __post_init__(self) -> None:
        for kind in KINDS:
            value = getattr(self, kind)
            if not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise InvalidRequestError(f"{kind} must be a number >= 0, got {value!r}")

    @property
    def unlimited(self) -> bool:
        return not any(getattr(self, kind) for kind in KINDS)


class QuotaFile:
    """The quotas of one data directory (read and written whole)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / SECURITY_DIR / QUOTAS_FILE

    def read(self) -> dict[str, Quota]:
        if not self.path.exists():
            return {}
        try:
            doc: Any = json.loads(self.path.read_bytes())
            body = doc["body"]
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            if zlib.crc32(canonical) != doc["crc32"]:
                raise ValueError("checksum mismatch")
            return {p: Quota(**q) for p, q in body["quotas"].items()}
        except (OSError, ValueError, KeyError, TypeError, InvalidRequestError) as exc:
            raise InvalidConfigError(f"quota file {self.path} is damaged: {exc}") from exc

    def write(self, quotas: dict[str, Quota]) -> None:
        body = {"version": 1, "quotas": {p: asdict(q) for p, q in sorted(quotas.items())}}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        doc = {"crc32": zlib.crc32(canonical), "body": body}
        files.atomic_write(self.path, json.dumps(doc, indent=1).encode() + b"\n")
        os.chmod(self.path, 0o600)


class Quotas:
    """The live quotas and each principal's virtual clocks."""

    def __init__(self, data_dir: Path) -> None:
        self.file = QuotaFile(data_dir)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one read-modify-write of the file at a time
        self._quotas: dict[str, Quota] = {}
        self._due: dict[tuple[str, str], float] = {}
        self.throttled_s = 0.0
        self.reload()

    def reload(self) -> None:
        quotas = self.file.read()
        with self._lock:
            self._quotas = quotas
            self._due.clear()

    def snapshot(self) -> dict[str, Quota]:
        """The quotas in force, by principal (``*``: everyone without their own)."""
        with self._lock:
            return dict(self._quotas)

    def set(self, principal: str, changes: dict[str, float]) -> Quota:
        """Change ``principal``'s quotas (kinds left out keep their value; all 0 removes
        the entry), write the file and apply it at once. Returns the new quota."""
        if not 0 < len(principal) <= MAX_PRINCIPAL_CHARS or not principal.isprintable():
            raise InvalidRequestError(
                f"a quota needs a principal of 1-{MAX_PRINCIPAL_CHARS} printable characters"
                " (a user, or * for everyone without their own)"
            )
        unknown = set(changes) - set(KINDS)
        if unknown:
            raise InvalidRequestError(f"unknown quota kinds: {sorted(unknown)}")
        with self._write_lock:
            quotas = self.file.read()
            new = replace(quotas.get(principal, Quota()), **changes)
            if new.unlimited:
                quotas.pop(principal, None)
            else:
                quotas[principal] = new
            self.file.write(quotas)
            with self._lock:
                self._quotas = quotas
                for kind in KINDS:
                    self._due.pop((principal, kind), None)
        return new

    @property
    def active(self) -> bool:
        return bool(self._quotas)

    def quota(self, principal: str) -> Quota | None:
        return self._quotas.get(principal) or self._quotas.get(DEFAULT)

    def delay(self, principal: str, kind: str, amount: float) -> float:
        """Seconds to hold the answer so that ``principal`` stays within its ``kind``
        quota after ``amount`` more units (0 when unlimited or within it)."""
        quota = self.quota(principal)
        rate = getattr(quota, kind) if quota is not None else 0
        if not rate or amount <= 0:
            return 0.0
        now = time.monotonic()
        key = (principal, kind)
        with self._lock:
            due = max(self._due.get(key, now), now - BURST_S) + amount / rate
            self._due[key] = due
        wait = min(max(0.0, due - now - BURST_S), MAX_DELAY_S)
        if wait:
            self.throttled_s += wait
        return wait
