"""What TLS, token authentication and ACLs cost: produce and replay throughput against
the same broker build in several modes, run interleaved in one session.

    python benchmarks/bench_security.py [--records 2000000] [--runs 3] [--no-write]

Modes: plaintext; token auth without TLS; token auth + ACLs (the client's principal is an
ordinary user with allow rules, so every request takes the authorisation path); TLS alone;
TLS + token; TLS + token + ACLs; mutual TLS (the certificate is the identity). The modes
without TLS separate what authentication and authorisation cost from what TLS costs.

Each run starts a fresh broker subprocess per mode on a free 127.0.0.1 port with a
temporary data dir and stops it afterwards; before each produce the page cache is warmed
the same way (``benchmarks/peers/servers.warm_page_cache``: on this VM the first new pages
after a pause cost ~25x more kernel CPU). The workload is the ``make bench-peers`` one:
``records`` x 100 B produced with ``send_batch`` in chunks of 1,000 (``linger_ms=5``,
512 KiB batches, acks=leader), then replayed from offset 0 with ``poll_batch``. Medians of
the runs (min-max) go to RESULTS.md section ``security``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peers.servers import warm_page_cache  # noqa: E402
from logstream.broker.security.acl_log import offline_acl_store  # noqa: E402
from logstream.broker.security.acls import Acl  # noqa: E402
from logstream.broker.security.credentials import CredentialStore  # noqa: E402
from logstream.cli.certs import make_dev_certs  # noqa: E402
from logstream.client import Admin, Consumer, Producer  # noqa: E402
from logstream.testing.broker import BrokerProcess  # noqa: E402

SIZE = 100
CHUNK = 1_000
TOPIC = "bench"
MODES = (
    "plaintext",
    "token",
    "token + ACLs",
    "TLS",
    "TLS + token",
    "TLS + token + ACLs",
    "mutual TLS",
)


def _setup(mode: str, base: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(broker config, client keyword arguments) for ``mode``."""
    if mode == "plaintext":
        return {}, {}
    config: dict[str, Any] = {}
    client: dict[str, Any] = {}
    if "TLS" in mode:
        certs = make_dev_certs(base / "tls", client_name="bencher")
        config = {"tls_cert": str(certs["server"]), "tls_key": str(certs["server_key"])}
        client = {"ca": certs["ca"]}
        if mode == "mutual TLS":
            config["tls_client_ca"] = str(certs["ca"])
            client.update(cert=certs["client"], key=certs["client_key"])
    if "token" in mode:
        client["token"] = CredentialStore(base / "data").add("bencher")
        config["auth"] = True
    if mode.endswith("ACLs"):
        config["acls"] = True
        with offline_acl_store(base / "data") as acls:
            acls.add(
                [
                    Acl.checked("bencher", "topic", TOPIC, "literal", op)
                    for op in ("create", "write", "read")
                ]
            )
    return config, client


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Phase:
    """Wall time and CPU time (this process + the broker) of one phase."""

    def __init__(self, broker_pid: int) -> None:
        self.pid = broker_pid

    def __enter__(self) -> Phase:
        self.wall = time.perf_counter()
        self.cpu = time.process_time() + _cpu_s(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() + _cpu_s(self.pid) - self.cpu


def _produce(address: str, client: dict[str, Any], n: int, phase: Phase) -> None:
    values = [bytes([65 + i % 26]) * SIZE for i in range(CHUNK)]
    producer = Producer(address, linger_ms=5.0, batch_bytes=512 * 1024, **client)
    futures = []
    with phase:
        for _ in range(n // CHUNK):
            futures.append(producer.send_batch(TOPIC, values))
        producer.flush(timeout=300)
    for f in futures:
        f.result(timeout=60)
    producer.close()


def _replay(address: str, client: dict[str, Any], n: int, phase: Phase) -> None:
    consumer = Consumer(address, auto_offset_reset="earliest", **client)
    count = 0
    deadline = time.perf_counter() + 120
    with phase:
        consumer.assign([(TOPIC, 0)])
        while count < n and time.perf_counter() < deadline:
            cols = consumer.poll_batch(timeout=0.5, max_records=100_000)
            if cols:
                _, _, lengths = cols.value_buffer()
                count += len(cols)
                assert int(np.maximum(lengths, 0).sum()) == len(cols) * SIZE
    consumer.close()
    if count != n:
        raise AssertionError(f"replay read {count} of {n} records")


def run_mode(mode: str, n: int) -> tuple[Phase, Phase]:
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        base = Path(tmp)
        config, client = _setup(mode, base)
        with BrokerProcess(base / "data", log_level="WARNING", **config) as broker:
            admin = Admin(broker.address, **client)
            admin.create_topic(TOPIC)
            admin.close()
            produce, replay = Phase(broker.pid), Phase(broker.pid)
            warm_page_cache()  # every mode starts from the same page cache state
            _produce(broker.address, client, n, produce)
            _replay(broker.address, client, n, replay)
            return produce, replay


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    n = args.records // CHUNK * CHUNK
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    cpu: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    for run in range(args.runs):
        for mode in MODES:  # interleaved: machine load drifts over a run
            produce, replay = run_mode(mode, n)
            produce_s, replay_s = produce.wall, replay.wall
            times[mode].append((produce_s, replay_s))
            cpu[mode].append((produce.cpu, replay.cpu))
            print(
                f"run {run + 1} {mode:<20} produce {n / produce_s:>10,.0f}/s "
                f"replay {n / replay_s:>10,.0f}/s",
                flush=True,
            )

    def rates(mode: str, i: int) -> list[float]:
        return [n / t[i] for t in times[mode]]

    def paired(mode: str, i: int) -> float:
        """Median over runs of this mode's rate / plaintext's rate in the same run: the
        runs are interleaved, so machine load that drifts between runs mostly cancels."""
        return statistics.median(
            t[i] / m[i] for t, m in zip(times["plaintext"], times[mode], strict=True)
        )

    lines = [
        f"`benchmarks/bench_security.py`: {n:,} x {SIZE} B, produce (send_batch, acks=leader) "
        f"and replay (poll_batch), medians of {args.runs} interleaved runs (min-max); "
        '"vs plaintext" is the median of the per-run ratios, '
        "a fresh broker subprocess per mode and run.",
        "",
        "| mode | produce records/s | vs plaintext (paired) | replay records/s "
        "| vs plaintext (paired) | CPU ns/record produce, replay (client + broker) "
        "| CPU vs plaintext |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def cpu_ns(mode: str, i: int) -> float:
        return statistics.median(c[i] for c in cpu[mode]) / n * 1e9

    for mode in MODES:
        cells = []
        for i in (0, 1):
            r = rates(mode, i)
            med = statistics.median(r)
            cells.append(f"{med:,.0f} ({min(r):,.0f}-{max(r):,.0f})")
            cells.append(f"{paired(mode, i) * 100:.0f}%")
        ns = [cpu_ns(mode, i) for i in (0, 1)]
        cells.append(f"{ns[0]:,.0f}, {ns[1]:,.0f}")
        cells.append(", ".join(f"{ns[i] / cpu_ns('plaintext', i) * 100:.0f}%" for i in (0, 1)))
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines += [
        "",
        f"Load average at the end of the run: {load}. On a shared machine the wall-clock "
        "rates swing by more than the differences between modes; the CPU time per record "
        "(this process + the broker, all threads) is the steadier figure.",
    ]
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
