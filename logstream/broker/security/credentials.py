"""API tokens: issued once, stored only as salted scrypt hashes in the data directory.

A token reads ``ls1.<user>.<secret>``: the user name lets the broker find the one hash to
check, the secret is 32 random bytes (URL-safe base64). The store keeps per user the salt,
the scrypt parameters and the derived key, never the secret.

File ``<data_dir>/security/credentials.json`` (the folder is 0700, the file 0600)::

    {"crc32": <zlib.crc32 of the canonical body>, "body": {"version": 1, "users": {
        "alice": {"salt": <hex>, "hash": <hex>, "n": 16384, "r": 8, "p": 1,
                  "created_ms": <int>,
                  "scram": {"SCRAM-SHA-256": {"salt": <hex>, "stored_key": <hex>,
                            "server_key": <hex>, "iterations": 4096}, "SCRAM-SHA-512": ...}}}}}

The ``scram`` entries (RFC 5802 verifiers, for the Kafka listener's SASL/SCRAM, with the
whole token as the password) are written when a token is created or rotated; users made
before they existed have none and can use SASL/PLAIN until their token is rotated.

written with the tmp + fsync + rename ritual (``storage.files.atomic_write``); a file
whose checksum does not match refuses the start instead of locking everyone out silently.

Concurrency: a store is used by one process at a time for writes (the CLI offline, before
the broker starts); the broker only reads it, at start and on SIGHUP (:meth:`reload`).
:meth:`verify` is thread-safe and slow on purpose (~50 ms of scrypt): callers cache.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logstream.errors import InvalidConfigError, InvalidRequestError
from logstream.storage import files

SECURITY_DIR = "security"
CREDENTIALS_FILE = "credentials.json"
TOKEN_PREFIX = "ls1."
USER_NAME = re.compile(r"^[A-Za-z0-9_@+=-][A-Za-z0-9._@+=-]{0,127}$")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1  # ~16 MiB and ~50 ms per check
KEY_BYTES = 32
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_ITERATIONS = 4096  # Kafka's minimum for SCRAM credentials


@dataclass(frozen=True)
class ScramVerifier:
    """What a SCRAM server keeps of a password (RFC 5802): never the password itself."""

    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def to_json(self) -> dict[str, Any]:
        return {
            "salt": self.salt.hex(),
            "stored_key": self.stored_key.hex(),
            "server_key": self.server_key.hex(),
            "iterations": self.iterations,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ScramVerifier:
        return cls(
            bytes.fromhex(doc["salt"]),
            bytes.fromhex(doc["stored_key"]),
            bytes.fromhex(doc["server_key"]),
            int(doc["iterations"]),
        )


def scram_verifiers(token: str) -> dict[str, ScramVerifier]:
    from scramp import ScramMechanism

    out = {}
    for name in SCRAM_MECHANISMS:
        salt, stored, server, iterations = ScramMechanism(name).make_auth_info(
            token, iteration_count=SCRAM_ITERATIONS
        )
        out[name] = ScramVerifier(salt, stored, server, iterations)
    return out


@dataclass(frozen=True)
class UserRecord:
    name: str
    salt: bytes
    key: bytes
    n: int
    r: int
    p: int
    created_ms: int
    scram: dict[str, ScramVerifier] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "salt": self.salt.hex(),
            "hash": self.key.hex(),
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "created_ms": self.created_ms,
        }
        if self.scram:
            doc["scram"] = {m: v.to_json() for m, v in sorted(self.scram.items())}
        return doc


def _derive(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=KEY_BYTES
    )


def split_token(token: str) -> tuple[str, str] | None:
    """``(user, secret)`` of a well-formed token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    user, sep, secret = token[len(TOKEN_PREFIX) :].rpartition(".")
    if not sep or not secret or not USER_NAME.match(user):
        return None
    return user, secret


def check_user_name(name: str) -> str:
    if not USER_NAME.match(name):
        raise InvalidRequestError(
            f"user names are 1-128 characters of letters, digits and ._@+=- "
            f"(not starting with '.'), got {name!r}"
        )
    return name


class CredentialStore:
    """The users of one data directory and their token hashes."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / SECURITY_DIR
        self.path = self.dir / CREDENTIALS_FILE
        self._lock = threading.Lock()
        self._users: dict[str, UserRecord] = {}
        self.generation = 0
        self.reload()

    def reload(self) -> None:
        """Read the file again (a missing file: no users)."""
        users = _parse(self.path) if self.path.exists() else {}
        with self._lock:
            self._users = users
            self.generation += 1

    def users(self) -> list[UserRecord]:
        with self._lock:
            return sorted(self._users.values(), key=lambda u: u.name)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._users

    def add(self, name: str, *, replace: bool = False) -> str:
        """Create (or with ``replace``, rotate) ``name``'s token; returns the token, which is
        never stored and cannot be shown again."""
        check_user_name(name)
        with self._lock:
            if name in self._users and not replace:
                raise InvalidRequestError(f"user {name!r} exists (use rotate for a new token)")
            if name not in self._users and replace:
                raise InvalidRequestError(f"no user {name!r}")
            secret = secrets.token_urlsafe(32)
            salt = secrets.token_bytes(16)
            key = _derive(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
            token = f"{TOKEN_PREFIX}{name}.{secret}"
            users = dict(self._users)
            users[name] = UserRecord(
                name,
                salt,
                key,
                SCRYPT_N,
                SCRYPT_R,
                SCRYPT_P,
                int(time.time() * 1000),
                scram_verifiers(token),
            )
            self._write(users)
        return token

    def scram_verifier(self, name: str, mechanism: str) -> ScramVerifier | None:
        """The user's verifier for a SCRAM mechanism (None: no such user, or a token made
        before SCRAM verifiers were kept)."""
        with self._lock:
            record = self._users.get(name)
        return record.scram.get(mechanism) if record is not None else None

    def remove(self, name: str) -> None:
        with self._lock:
            if name not in self._users:
                raise InvalidRequestError(f"no user {name!r}")
            users = dict(self._users)
            del users[name]
            self._write(users)

    def verify(self, token: str) -> str | None:
        """The user a token belongs to, or None (unknown user, wrong secret, malformed)."""
        parts = split_token(token)
        if parts is None:
            return None
        name, secret = parts
        with self._lock:
            record = self._users.get(name)
        if record is None:
            return None
        key = _derive(secret, record.salt, record.n, record.r, record.p)
        return name if hmac.compare_digest(key, record.key) else None

    def _write(self, users: dict[str, UserRecord]) -> None:
        body = {"version": 1, "users": {n: u.to_json() for n, u in sorted(users.items())}}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        doc = {"crc32": zlib.crc32(canonical), "body": body}
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        files.atomic_write(self.path, json.dumps(doc, indent=1).encode() + b"\n")
        os.chmod(self.path, 0o600)
        self._users = users
        self.generation += 1


def _parse(path: Path) -> dict[str, UserRecord]:
    try:
        doc = json.loads(path.read_bytes())
        body = doc["body"]
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        if zlib.crc32(canonical) != doc["crc32"]:
            raise ValueError("checksum mismatch")
        users = {}
        for name, u in body["users"].items():
            users[name] = UserRecord(
                name,
                bytes.fromhex(u["salt"]),
                bytes.fromhex(u["hash"]),
                int(u["n"]),
                int(u["r"]),
                int(u["p"]),
                int(u["created_ms"]),
                {m: ScramVerifier.from_json(v) for m, v in u.get("scram", {}).items()},
            )
        return users
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidConfigError(f"credentials file {path} is damaged: {exc}") from exc
