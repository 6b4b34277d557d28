"""What TLS costs outside gRPC: CPU per byte of a one-way stream over loopback, through a
plain socket and through Python's ``ssl`` (OpenSSL), interleaved (decision 0046).

    python benchmarks/bench_tls_socket.py [--mib 512] [--rounds 4]

A sender process writes ``--mib`` MiB in 1 MiB ``sendall`` calls; this process receives
them with ``recv_into`` a reused 1 MiB buffer (no allocation per read, the cheapest a
receiver can be). Each side reports its own CPU time over the stream; the output gives
the medians in ns per byte, to set against what gRPC's TLS adds per wire byte in
``bench_tls_replay.py``: a separate TLS connection for fetch data is only worth building
if this is cheaper.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHUNK = 1024 * 1024
TIMEOUT_S = 120.0


def _sender(port_q: Any, total: int, certs: dict[str, str] | None) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(TIMEOUT_S)
        port_q.put(listener.getsockname()[1])
        conn, _ = listener.accept()
    conn.settimeout(TIMEOUT_S)
    if certs is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs["server"], certs["server_key"])
        conn = ctx.wrap_socket(conn, server_side=True)
    payload = os.urandom(CHUNK)
    conn.recv(1)  # the receiver is ready (the handshake is done)
    cpu0 = time.process_time()
    for _ in range(total // CHUNK):
        conn.sendall(payload)
    port_q.put(time.process_time() - cpu0)
    conn.recv(1)  # the receiver has everything
    conn.close()


def stream(total: int, certs: dict[str, str] | None) -> dict[str, float]:
    """One stream of ``total`` bytes (TLS when ``certs``): CPU ns per byte of both sides."""
    ctx = mp.get_context("spawn")
    port_q = ctx.Queue()
    proc = ctx.Process(target=_sender, args=(port_q, total, certs))
    proc.start()
    try:
        sock: socket.socket = socket.create_connection(
            ("127.0.0.1", port_q.get(timeout=TIMEOUT_S)), timeout=TIMEOUT_S
        )
        if certs is not None:
            client_ctx = ssl.create_default_context(cafile=certs["ca"])
            client_ctx.check_hostname = False
            sock = client_ctx.wrap_socket(sock, server_hostname="localhost")
        view = memoryview(bytearray(CHUNK))
        sock.sendall(b"g")
        cpu0, got = time.process_time(), 0
        while got < total:
            n = sock.recv_into(view, CHUNK)
            if n == 0:
                raise ConnectionError(f"stream ended after {got} of {total} B")
            got += n
        receiver_s = time.process_time() - cpu0
        sender_s = port_q.get(timeout=TIMEOUT_S)
        sock.sendall(b"d")
        sock.close()
    finally:
        proc.join(TIMEOUT_S)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    return {"sender": sender_s / total * 1e9, "receiver": receiver_s / total * 1e9}


def run(total: int, rounds: int, certs: dict[str, str]) -> dict[str, dict[str, float]]:
    """Medians over ``rounds`` of each mode, the modes alternating and reversed every
    other round."""
    samples: dict[str, list[dict[str, float]]] = {"plain": [], "TLS": []}
    for rnd in range(rounds):
        for mode in ("plain", "TLS") if rnd % 2 == 0 else ("TLS", "plain"):
            samples[mode].append(stream(total, certs if mode == "TLS" else None))
    return {
        mode: {side: statistics.median(x[side] for x in xs) for side in ("sender", "receiver")}
        for mode, xs in samples.items()
    }


def dev_certs(base: Path) -> dict[str, str]:
    from logstream.cli.certs import make_dev_certs

    return {k: str(v) for k, v in make_dev_certs(base / "tls", client_name="bench").items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tls-socket-") as tmp:
        medians = run(args.mib * CHUNK, args.rounds, dev_certs(Path(tmp)))
    print(f"{ssl.OPENSSL_VERSION}; {args.mib} MiB per stream, {args.rounds} rounds, "
          f"load {os.getloadavg()[0]:.1f}; CPU ns per byte, medians")  # fmt: skip
    for mode, m in medians.items():
        print(f"  {mode:<5} sender {m['sender']:.3f}  receiver {m['receiver']:.3f}")
    tls, plain = medians["TLS"], medians["plain"]
    print(
        f"  TLS adds {tls['sender'] - plain['sender']:+.3f} sending, "
        f"{tls['receiver'] - plain['receiver']:+.3f} receiving"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
