"""What TLS, token authentication and ACLs cost: produce and replay throughput against
the same broker build in four modes, run interleaved in one session.

    python benchmarks/bench_security.py [--records 300000] [--runs 3] [--no-write]

Modes: plaintext; TLS + token auth; TLS + token auth + ACLs (the client's principal is an
ordinary user with allow rules, so every request takes the authorisation path); mutual TLS
(the certificate is the identity). Each run starts a fresh broker subprocess per mode on a
free 127.0.0.1 port with a temporary data dir and stops it afterwards. The workload is the
``make bench-peers`` one: ``records`` x 100 B produced with ``send_batch`` in chunks of
1,000 (``linger_ms=5``, 512 KiB batches, acks=leader), then replayed from offset 0 with
``poll_batch``. Medians of the runs (min-max) go to RESULTS.md section ``security``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from logstream.broker.security.acls import Acl, AclStore  # noqa: E402
from logstream.broker.security.credentials import CredentialStore  # noqa: E402
from logstream.cli.certs import make_dev_certs  # noqa: E402
from logstream.client import Admin, Consumer, Producer  # noqa: E402
from logstream.testing.broker import BrokerProcess  # noqa: E402

SIZE = 100
CHUNK = 1_000
TOPIC = "bench"
MODES = ("plaintext", "TLS + token", "TLS + token + ACLs", "mutual TLS")


def _setup(mode: str, base: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(broker config, client keyword arguments) for ``mode``."""
    if mode == "plaintext":
        return {}, {}
    certs = make_dev_certs(base / "tls", client_name="bencher")
    tls = {"tls_cert": str(certs["server"]), "tls_key": str(certs["server_key"])}
    if mode == "mutual TLS":
        config = {**tls, "tls_client_ca": str(certs["ca"])}
        return config, {"ca": certs["ca"], "cert": certs["client"], "key": certs["client_key"]}
    token = CredentialStore(base / "data").add("bencher")
    config = {**tls, "auth": True}
    if mode.endswith("ACLs"):
        config["acls"] = True
        AclStore(base / "data").add(
            [
                Acl.checked("bencher", "topic", TOPIC, "literal", op)
                for op in ("create", "write", "read")
            ]
        )
    return config, {"ca": certs["ca"], "token": token}


def _produce(address: str, client: dict[str, Any], n: int) -> float:
    values = [bytes([65 + i % 26]) * SIZE for i in range(CHUNK)]
    producer = Producer(address, linger_ms=5.0, batch_bytes=512 * 1024, **client)
    futures = []
    start = time.perf_counter()
    for _ in range(n // CHUNK):
        futures.append(producer.send_batch(TOPIC, values))
    producer.flush(timeout=300)
    elapsed = time.perf_counter() - start
    for f in futures:
        f.result(timeout=60)
    producer.close()
    return elapsed


def _replay(address: str, client: dict[str, Any], n: int) -> float:
    consumer = Consumer(address, auto_offset_reset="earliest", **client)
    count = 0
    start = time.perf_counter()
    consumer.assign([(TOPIC, 0)])
    deadline = start + 120
    while count < n and time.perf_counter() < deadline:
        cols = consumer.poll_batch(timeout=0.5, max_records=100_000)
        if cols:
            _, _, lengths = cols.value_buffer()
            count += len(cols)
            assert int(np.maximum(lengths, 0).sum()) == len(cols) * SIZE
    elapsed = time.perf_counter() - start
    consumer.close()
    if count != n:
        raise AssertionError(f"replay read {count} of {n} records")
    return elapsed


def run_mode(mode: str, n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        base = Path(tmp)
        config, client = _setup(mode, base)
        with BrokerProcess(base / "data", log_level="WARNING", **config) as broker:
            admin = Admin(broker.address, **client)
            admin.create_topic(TOPIC)
            admin.close()
            return _produce(broker.address, client, n), _replay(broker.address, client, n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    n = args.records // CHUNK * CHUNK
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    for run in range(args.runs):
        for mode in MODES:  # interleaved: machine load drifts over a run
            produce_s, replay_s = run_mode(mode, n)
            times[mode].append((produce_s, replay_s))
            print(
                f"run {run + 1} {mode:<20} produce {n / produce_s:>10,.0f}/s "
                f"replay {n / replay_s:>10,.0f}/s",
                flush=True,
            )

    def rates(mode: str, i: int) -> list[float]:
        return [n / t[i] for t in times[mode]]

    base = {i: statistics.median(rates("plaintext", i)) for i in (0, 1)}
    lines = [
        f"`benchmarks/bench_security.py`: {n:,} x {SIZE} B, produce (send_batch, acks=leader) "
        f"and replay (poll_batch), medians of {args.runs} interleaved runs (min-max), "
        "a fresh broker subprocess per mode and run.",
        "",
        "| mode | produce records/s | vs plaintext | replay records/s | vs plaintext |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode in MODES:
        cells = []
        for i in (0, 1):
            r = rates(mode, i)
            med = statistics.median(r)
            cells.append(f"{med:,.0f} ({min(r):,.0f}-{max(r):,.0f})")
            cells.append(f"{med / base[i] * 100:.0f}%")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        from common import machine_line, write_section

        write_section(
            "security", f"## Security (TLS, tokens, ACLs)\n\n{machine_line()}\n\n{section}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
