"""logstream side by side with Redis Streams and NATS JetStream: ``make bench-peers``.

    python benchmarks/peers/run.py [--quick] [--runs 3]
                                   [--systems redis,nats,logstream,secure,kafka,floor]
                                   [--workloads produce,replay,group] [--no-scale]
                                   [--no-install] [--results PATH] [--json PATH]

Installs what is missing (servers.py), then for each run and each system starts a fresh
server on a free 127.0.0.1 port (temp dir), runs the same workload through the adapter's
functions, each call in its own spawned process with a time limit, and stops exactly the
server it started. Every consumer verifies the count and bytes it received. Medians of the
runs (with min-max) go to the ``peers`` section of benchmarks/RESULTS.md.

The full run is sized for <= 15 minutes on 2 cores; ``--quick`` (used by the smoke test) runs
tiny counts once in well under a minute. ``--workloads`` runs a part of it (the other rows
say "n/a (not selected)"); give it its own ``--results`` file, or it replaces the full table.

Before each produce workload of every system the driver touches and frees 256 MiB or more
of page cache (``servers.warm_page_cache``): on this VM the first new pages after a quiet gap cost
~25x more kernel CPU, and the systems' setups leave gaps of different lengths.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import servers  # noqa: E402
from benchmarks.peers.workload import Result, VerificationError  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "peers"


@dataclass(frozen=True)
class Plan:
    small: tuple[int, int]  # (records, bytes each)
    large: tuple[int, int]
    durable: tuple[int, int]
    latency_rate: float
    latency_seconds: float
    runs: int
    call_timeout: float
    scale_records: int
    scale_partitions: tuple[int, ...]
    growth_checkpoints: tuple[int, ...]
    growth_record_bytes: int  # small records, so 10^8 of them take ~3 GB and ~30 s
    growth_deadline_s: float  # stop growing (and say so) past this
    startup_partitions: tuple[int, ...]
    lookup_samples: int
    rr_rate: float = 500  # request/reply: requests per second, paced, open loop
    rr_seconds: float = 10
    queue_records: int = 100_000  # work queue: worker processes, 100 B, ack per message
    queue_workers: int = 4
    timing_records: int = 200  # nack-redelivery and lease-expiry timing samples (logstream)


FULL = Plan(
    small=(1_000_000, 100),
    large=(200_000, 1024),
    durable=(200_000, 100),
    latency_rate=2_000,
    latency_seconds=10,
    runs=3,
    call_timeout=240,
    scale_records=200_000,
    scale_partitions=(1, 8, 64, 512),
    growth_checkpoints=(10_000, 100_000, 1_000_000, 10_000_000, 100_000_000),
    growth_record_bytes=16,
    growth_deadline_s=180,
    startup_partitions=(1_000, 5_000),
    lookup_samples=100,
    queue_records=100_000,
    queue_workers=4,
    timing_records=200,
)
QUICK = Plan(
    small=(20_000, 100),
    large=(4_000, 1024),
    durable=(5_000, 100),
    latency_rate=2_000,
    latency_seconds=2,
    runs=1,
    call_timeout=60,
    scale_records=5_000,
    scale_partitions=(1, 8),
    growth_checkpoints=(1_000, 10_000),
    growth_record_bytes=16,
    growth_deadline_s=20,
    startup_partitions=(100,),
    lookup_samples=20,
    rr_seconds=1,
    queue_records=4_000,
    queue_workers=2,
    timing_records=20,
)

SYSTEMS = {
    "redis": ("benchmarks.peers.redis_streams", "Redis Streams"),
    "nats": ("benchmarks.peers.nats_jetstream", "NATS JetStream"),
    "logstream": ("benchmarks.peers.logstream_adapter", "logstream"),
    # The same broker and client with TLS, a token and ACLs: produce, replay and group only,
    # compared with the plaintext logstream of the same run (the 15% rows).
    "secure": ("benchmarks.peers.logstream_adapter", "logstream, TLS + token + ACLs"),
    "kafka": ("benchmarks.peers.kafka_adapter", "logstream, Kafka listener"),
    # Not a peer: a bare gRPC relay, latency only, the floor under any gRPC-Python design.
    "floor": ("benchmarks.peers.grpc_floor", "bare gRPC relay (floor)"),
}


# request/reply (benchmarks/peers/request_reply.py): the function for each system
REQUEST_REPLY = {"redis": "redis_rr", "nats": "nats_rr", "logstream": "logstream_rr"}

# Workloads a system has no way to express at all (not "not yet"): recorded as "n/a (why)",
# which the report shows and does not count as a failure.
SECURE_TARGET = 0.85  # TLS + token + ACLs within 15% of plaintext
SECURE_NA = "TLS + token + ACLs: produce, replay and group rows only"
NOT_APPLICABLE = {
    "secure": {
        key: SECURE_NA for key in ("queue 100B", "durable produce 100B", "latency", "request reply")
    },
    "kafka": {
        "queue 100B": "the Kafka protocol has no queue groups",
        "request reply": "the Kafka protocol has no request/reply",
    },
}

# --------------------------------------------------------------------------- child calls


class NotAvailableError(Exception):
    pass


def _child(module: str, func: str, args: tuple, conn, env: dict[str, str]) -> None:
    import importlib
    import os

    os.environ.update(env)
    try:
        fn = getattr(importlib.import_module(module), func)
        res = fn(*args)
        conn.send(("ok", res))
    except VerificationError as e:
        conn.send(("verify", str(e)))
    except Exception as e:
        kind = "na" if type(e).__name__ == "NotAvailable" else "error"
        conn.send((kind, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"))
    finally:
        conn.close()


def call(module: str, func: str, args: tuple, timeout: float, env: dict[str, str] | None = None):
    """Run ``module.func(*args)`` in a fresh spawned process (with ``env`` added to its
    environment); kill it after ``timeout``."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(module, func, args, child, env or {}))
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise TimeoutError(f"{func} did not finish within {timeout:.0f} s")
        kind, payload = parent.recv()
    except EOFError:
        proc.join(5)
        raise RuntimeError(f"{func}: worker died with exit code {proc.exitcode}") from None
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    if kind == "ok":
        return payload
    if kind == "verify":
        raise VerificationError(payload)
    if kind == "na":
        raise NotAvailableError(payload.splitlines()[0])
    raise RuntimeError(payload)


class RssSampler:
    """Samples the server's RSS every 0.1 s while a produce runs."""

    def __init__(self, server: servers.Server) -> None:
        self.server = server
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._t0, self.server.rss()))
            self._stop.wait(0.1)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic() - self._t0, self.server.rss()))

    def points(self, key: str = "VmRSS") -> list[float]:
        """MiB at 0, 25, 50, 75 and 100 % of the produce."""
        if not self.samples:
            return []
        end = self.samples[-1][0]
        out = []
        for frac in (0, 0.25, 0.5, 0.75, 1.0):
            t = frac * end
            best = min(self.samples, key=lambda s: abs(s[0] - t))
            out.append(best[1].get(key, 0) / 1024)
        return out


# --------------------------------------------------------------------------- the workload


def start_server(system: str) -> servers.Server:
    if system == "redis":
        return servers.redis_server()
    if system == "nats":
        return servers.nats_server()
    if system == "floor":
        from benchmarks.peers import grpc_floor

        return grpc_floor.relay_server()
    if system == "kafka":
        return servers.logstream_kafka()
    if system == "secure":
        return servers.logstream_secure()
    return servers.logstream_broker()


def workload_of(key: str) -> str:
    """The ``--workloads`` name of a row: its key without the record size (and the Kafka
    replay's ceiling row is part of the replay workload)."""
    return key.removesuffix(" 100B").removesuffix(" 1KiB").removesuffix(" ceiling")


WORKLOADS = (
    "produce", "replay", "group", "queue", "queue timing", "durable produce", "latency",
    "request reply", "produce per record", "replay per record", "latency poll",
)  # fmt: skip
NOT_SELECTED = "not selected (--workloads)"


def run_system(
    system: str,
    plan: Plan,
    run_no: int,
    log,
    only: frozenset[str] | None = None,
    warmup: bool = True,
) -> dict[str, object]:
    """One run of the whole workload against a fresh server; returns op -> Result | str.
    ``only``: the workloads to run (``WORKLOADS`` names); the others are "n/a" rows.
    ``warmup``: touch the page cache before each produce (``servers.warm_page_cache``)."""
    module, _label = SYSTEMS[system]
    out: dict[str, object] = {}
    srv = start_server(system)
    log(f"  {system}: server pid {srv.pid} on {srv.addr} ({srv.workdir})")
    env = srv.extra.get("client_env") or {}
    try:

        def op(
            key: str, func: str, args: tuple, sampler: bool = False, where: str = module
        ) -> None:
            if only is not None and workload_of(key) not in only:
                out[key] = f"n/a ({NOT_SELECTED})"
                return
            t0 = time.monotonic()
            warm_us = None
            if warmup and "produce" in key:  # args: (topic, records, size)
                warm_us = servers.warm_page_cache(servers.warmup_mb(args[1], args[2]))
            cpu0 = srv.cpu_seconds()
            try:
                if sampler:
                    with RssSampler(srv) as rs:
                        res = call(where, func, (srv.addr, *args), plan.call_timeout, env)
                    res.extra["rss_mib"] = rs.points("VmRSS")
                    res.extra["rss_anon_mib"] = rs.points("RssAnon")
                else:
                    res = call(where, func, (srv.addr, *args), plan.call_timeout, env)
                out[key] = res
                if isinstance(res, dict):  # queue timing: distributions, not a rate
                    desc = "; ".join(
                        f"{k} p50 {v['p50_ms']:.1f} p99 {v['p99_ms']:.1f} max {v['max_ms']:.1f} ms"
                        for k, v in res.items()
                        if isinstance(v, dict)
                    )
                elif "p50_ms" in res.extra:
                    desc = f"p50 {res.extra['p50_ms']:.3f} ms p99 {res.extra['p99_ms']:.3f} ms"
                    if "cpu_us" in res.extra:
                        desc += ", CPU us/request " + ", ".join(
                            f"{k} {v:.0f}" for k, v in res.extra["cpu_us"].items()
                        )
                elif "server_cpu_us" in res.extra:
                    desc = (
                        f"{res.rate:,.0f} acks/s, CPU per ack: server "
                        f"{res.extra['server_cpu_us']:.1f} us, workers "
                        f"{res.extra['worker_cpu_us']:.1f} us"
                    )
                else:
                    # the server's CPU over the whole call (setup included) per record
                    cpu_s = srv.cpu_seconds() - cpu0
                    res.extra["server_cpu_ns"] = cpu_s / max(res.records, 1) * 1e9
                    desc = (
                        f"{res.rate:,.0f} rec/s {res.mb_s:.1f} MB/s, server CPU "
                        f"{res.extra['server_cpu_ns']:,.0f} ns/record"
                    )
            except NotAvailableError as e:
                # "NotAvailable: <what> yet: <detail>" -> "not yet available (<what>)"
                what = str(e).split(": ", 1)[-1].split(" are not")[0].split(":")[0]
                out[key] = f"not yet available ({what})"
                desc = f"{out[key]}: {e}"
            except VerificationError as e:
                out[key] = f"FAILED verification: {e}"
                desc = out[key]
            except Exception as e:
                out[key] = f"error: {str(e).splitlines()[0]}"
                desc = f"{out[key]}\n{e}"
            if warm_us is not None:
                desc += f" (page cache warm-up {warm_us:.1f} us/page)"
            log(f"    {key:<22} {desc}  [{time.monotonic() - t0:.1f} s]")

        if system == "floor":  # latency is all the relay can do
            op(
                "latency",
                "latency",
                (f"latency{run_no}", plan.latency_rate, plan.latency_seconds, plan.small[1]),
            )
            return out
        for label, (n, size) in (("100B", plan.small), ("1KiB", plan.large)):
            topic = f"bench{label.lower()}r{run_no}"
            op(f"produce {label}", "produce", (topic, n, size), sampler=label == "100B")
            if isinstance(out[f"produce {label}"], Result):
                op(f"replay {label}", "replay", (topic, n, size))
                if system == "kafka" and label == "100B":
                    # the same consumer against a server that does nothing: its ceiling
                    op(f"replay ceiling {label}", "replay", (topic, n, size), where=KAFKA_CEILING)
                op(f"group {label}", "group_consume", (topic, n, size))
            else:
                produced = out[f"produce {label}"]
                why = produced if NOT_SELECTED in str(produced) else "skipped (produce failed)"
                out[f"replay {label}"] = out[f"group {label}"] = why
        skip = NOT_APPLICABLE.get(system, {})

        def not_applicable(key: str) -> bool:
            if key not in skip:
                return False
            out[key] = f"n/a ({skip[key]})"
            log(f"    {key:<22} {out[key]}")
            return True

        queue_mod = "benchmarks.peers.queue_workload"
        if not not_applicable("queue 100B"):
            op(
                "queue 100B",
                f"{system}_queue",
                (srv.pid, plan.queue_records, 100, plan.queue_workers),
                where=queue_mod,
            )
        if system == "logstream":
            op("queue timing", "logstream_timing", (plan.timing_records,), where=queue_mod)
        n, size = plan.durable
        if not not_applicable("durable produce 100B"):
            op("durable produce 100B", "durable_produce", (f"durable{run_no}", n, size))
        if not not_applicable("latency"):
            op(
                "latency",
                "latency",
                (f"latency{run_no}", plan.latency_rate, plan.latency_seconds, plan.small[1]),
            )
        if not not_applicable("request reply"):
            op(
                "request reply",
                REQUEST_REPLY[system],
                (f"rr{run_no}", plan.rr_rate, plan.rr_seconds, plan.small[1])
                # the CPU per request of broker, responder and requester (logstream_rr)
                + ((srv.pid,) if system == "logstream" else ()),
                where="benchmarks.peers.request_reply",
            )
        if system == "logstream":
            n, size = plan.small
            n = min(n, 200_000)
            op("produce per record", "produce_per_record", (f"perrec{run_no}", n, size))
            topic = f"bench100br{run_no}"
            if isinstance(out.get("produce 100B"), Result):
                op("replay per record", "replay_per_record", (topic, plan.small[0], size))
            op(
                "latency poll",
                "latency_poll",
                (f"latpoll{run_no}", plan.latency_rate, plan.latency_seconds, plan.small[1]),
            )
        out["_disk_bytes"] = srv.disk_bytes()
    finally:
        srv.stop()
    return out


# --------------------------------------------------------------------------- scale (logstream)


def run_scale(plan: Plan, log) -> dict[str, object]:
    mod = SYSTEMS["logstream"][0]
    out: dict[str, object] = {}
    srv = servers.logstream_broker()
    try:
        for parts in plan.scale_partitions:
            try:
                res = call(
                    mod,
                    "scale_partitions",
                    (srv.addr, f"scale{parts}", parts, plan.scale_records, 100),
                    plan.call_timeout,
                )
                out[f"partitions {parts}"] = res
                log(
                    f"    {parts:>4} partitions: produce {res['produce_rate']:,.0f} rec/s, "
                    f"fetch {res['fetch_rate']:,.0f} rec/s"
                )
            except Exception as e:
                out[f"partitions {parts}"] = f"error: {str(e).splitlines()[0]}"
                log(f"    {parts} partitions: {out[f'partitions {parts}']}")
        try:
            res = call(
                mod,
                "scale_growth",
                (
                    srv.addr,
                    "growth",
                    plan.growth_checkpoints,
                    plan.growth_record_bytes,
                    plan.lookup_samples,
                    plan.growth_deadline_s,
                ),
                plan.call_timeout * 2,
            )
            out["growth"] = res
            for row in res:
                if "skipped" in row:
                    log(f"    {row['records']:>11,} records: skipped ({row['skipped']})")
                    continue
                log(
                    f"    {row['records']:>11,} records: lookup p50 {row['lookup_ms']:.3f} ms, "
                    f"fetch p50 {row['fetch_ms']:.3f} ms  [{row['elapsed_s']:.1f} s]"
                )
        except Exception as e:
            out["growth"] = f"error: {str(e).splitlines()[0]}"
            log(f"    growth: {out['growth']}")
    finally:
        srv.stop()

    # start-up time: an empty broker, then one holding N partitions (one record each)
    startup: list[dict[str, object]] = []
    for parts in (0, *plan.startup_partitions):
        srv = servers.logstream_broker()
        try:
            if parts:
                t0 = time.monotonic()
                call(mod, "fill_partitions", (srv.addr, parts), plan.call_timeout * 2)
                fill_s = time.monotonic() - t0
            else:
                fill_s = 0.0
            srv.stop(keep_dir=True)
            t0 = time.monotonic()
            srv.start(timeout=plan.call_timeout)
            ready_s = time.monotonic() - t0
            first = call(mod, "first_answer", (srv.addr,), plan.call_timeout)
            row = {
                "partitions": parts,
                "ready_s": ready_s,
                "first_answer_s": ready_s + first,
                "rss_mib": srv.rss().get("VmRSS", 0) / 1024,
                "fill_s": fill_s,
            }
            startup.append(row)
            log(
                f"    start-up with {parts} partitions: ready {ready_s:.2f} s, "
                f"answering {row['first_answer_s']:.2f} s"
            )
        except Exception as e:
            startup.append({"partitions": parts, "error": str(e).splitlines()[0]})
            log(f"    start-up with {parts} partitions: error {e}")
        finally:
            srv.stop()
    out["startup"] = startup
    return out


# --------------------------------------------------------------------------- reporting


def versions(systems: list[str]) -> list[str]:
    lines = []
    for system in systems:
        mod, label = SYSTEMS[system]
        try:
            client = call(mod, "client_version", (), 60)
        except Exception as e:
            client = f"client unavailable ({str(e).splitlines()[0]})"
        if system == "redis":
            server = f"redis-server {servers.redis_server_version()} (Debian {servers.debian_package_version('redis-server')})"  # noqa: E501
        elif system == "nats":
            server = f"nats-server {servers.nats_server_version()} (Debian {servers.debian_package_version('nats-server')})"  # noqa: E501
        elif system == "floor":
            server = "benchmarks/peers/grpc_floor.py (a Python grpc.server relay)"
        elif system == "kafka":
            server = (
                f"logstream broker's Kafka listener (this tree, Python {platform.python_version()})"
            )
        elif system == "secure":
            server = f"logstream broker with TLS, --auth, --acls (this tree, Python {platform.python_version()})"  # noqa: E501
        else:
            server = f"logstream broker (this tree, Python {platform.python_version()})"
        lines.append(f"- **{label}**: {server}; {client}")
    return lines


def configs(systems: list[str], plan: Plan) -> list[str]:
    text = {
        "redis": "**Redis Streams**: `redis-server --appendonly yes --appendfsync everysec "
        '--save ""` (RDB off); durable row: `CONFIG SET appendfsync always` (Debian\'s 7.0 '
        "has no WAITAOF). Client: `XADD` in non-transactional pipelines of 1,000; replay "
        "`XRANGE` pages of 1,000; group `XREADGROUP COUNT 1000` + one `XACK` per page "
        "pipelined with the next read; latency `XADD` per record, `XREAD BLOCK`.",
        "nats": "**NATS JetStream**: `nats-server -js -sd <tmp>` (file storage, one R1 stream; "
        "2.9 has no per-ack fsync setting, so the durable row is JetStream as configured). "
        "Client: `publish_async` with 4,000 acks in flight; replay through an ordered push "
        "consumer; group = durable push consumer, `AckPolicy.ALL`, ack every 1,000th "
        "message; latency `js.publish` per record (waits for the PubAck), ordered consumer "
        "callback.",
        "logstream": "**logstream**: `python -m logstream serve` with defaults (segment flush "
        'every 1,000 ms, like Redis\'s everysec); durable row: `acks="flushed"` (acknowledged '
        "after fsync). Client: `Producer(linger_ms=5, batch_bytes=512 KiB, compression=None)` "
        "fed by `send_batch` chunks of 1,000; replay `Consumer.poll_batch` (columnar); group "
        "`subscribe` + `commit()` per page; latency `send()` per record with `linger_ms=0`, "
        "`for record in consumer` (the loop's thread reads the stream; the `poll()` row: the "
        "prefetch thread reads it and hands records over).",
        "kafka": "**logstream, Kafka listener**: the same broker with `--kafka-listen`, driven by "
        "confluent-kafka: `produce_batch` of 1,000 (`linger.ms=5`, `acks=1`, no compression), "
        "counted from the log end offsets; replay `consume(1000)` from offset 0 with "
        "`fetch.queue.backoff.ms=10` (librdkafka's default waits 1 s after its prefetch queue "
        "was full); group `subscribe` + async `commit()` per page, the same setting; "
        "latency `produce()` per record with `linger.ms=0`, `poll()` as records arrive, "
        "`socket.nagle.disable` on both (as redis-py, nats-py and gRPC set TCP_NODELAY). "
        "No durable row: `acks=all` answers at logstream's leader level.",
        "secure": "**logstream, TLS + token + ACLs**: the same broker and client as "
        "**logstream**, with `--tls-cert/--tls-key` from `logstream certs dev`, `--auth` and "
        "`--acls`; the client (`ca=`, an API token) is a user that is not a super user, "
        "allowed by four rules (create, write, read on the topic prefix `bench`, read on group "
        "`bench`), so every call is authenticated and authorised. Produce, replay and group "
        "rows only; compared with the plaintext **logstream** of the same run.",
        "floor": "**bare gRPC relay (floor)**: not a peer. `benchmarks/peers/grpc_floor.py`: "
        "a threaded `grpc.server` that hands each message of a bidirectional `Pub` stream "
        "(acknowledged per message, pipelined) to every `Sub` server stream, raw bytes, no "
        "storage, no batching; producer and consumer as in logstream's latency workload. It "
        "only runs the latency workload: what grpcio itself costs for producer -> server -> "
        "consumer on this machine, the lower bound for logstream's latency.",
    }
    return [f"- {text[s]}" for s in systems]


def _fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"


def _agg(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def aggregate(all_runs: dict[str, list[dict[str, object]]]):
    """system -> op -> {"rate": (med, lo, hi), "mb_s": ..., ...} | str (first failure text)."""
    agg: dict[str, dict[str, object]] = {}
    for system, runs in all_runs.items():
        agg[system] = {}
        keys = [k for k in runs[0] if not k.startswith("_")] if runs else []
        for key in keys:
            vals = [r.get(key) for r in runs]
            if all(isinstance(v, dict) for v in vals):  # distributions: the last run's
                agg[system][key] = vals[-1]
                continue
            ok = [v for v in vals if isinstance(v, Result)]
            if len(ok) < len(vals) or not ok:
                bad = next(v for v in vals if not isinstance(v, Result))
                agg[system][key] = str(bad)
                continue
            entry: dict[str, object] = {
                "rate": _agg([v.rate for v in ok]),
                "mb_s": _agg([v.mb_s for v in ok]),
                "runs": len(ok),
            }
            if "p50_ms" in ok[0].extra:
                for q in ("p50_ms", "p99_ms", "p999_ms", "max_ms"):
                    entry[q] = _agg([v.extra[q] for v in ok])
            if all("cpu_us" in v.extra for v in ok):
                parts = ok[0].extra["cpu_us"]
                entry["cpu_us"] = {p: _agg([v.extra["cpu_us"][p] for v in ok]) for p in parts}
            if "server_cpu_us" in ok[0].extra:
                for q in ("server_cpu_us", "worker_cpu_us"):
                    entry[q] = _agg([v.extra[q] for v in ok])
            if "rss_mib" in ok[0].extra:
                entry["rss_mib"] = ok[-1].extra["rss_mib"]
                entry["rss_anon_mib"] = ok[-1].extra["rss_anon_mib"]
            agg[system][key] = entry
    return agg


TARGETS = [
    # (op, peer, min ratio of logstream to peer)
    ("produce 100B", "redis", 4.0),
    ("produce 100B", "nats", 15.0),
    ("replay 100B", "redis", 2.0),
    ("replay 100B", "nats", 8.0),
    ("group 100B", "redis", 4.0),
    ("queue 100B", "redis", 3.0),
    ("queue 100B", "nats", 10.0),
]


def _ratio(agg, op: str, peer: str) -> float | None:
    a = agg.get("logstream", {}).get(op)
    b = agg.get(peer, {}).get(op)
    if isinstance(a, dict) and isinstance(b, dict):
        return a["rate"][0] / b["rate"][0]
    return None


def render(plan: Plan, systems: list[str], agg, scale, rss, meta) -> str:
    labels = {s: SYSTEMS[s][1] for s in systems}
    lines: list[str] = []
    w = lines.append
    w("## Side by side: Redis Streams and NATS JetStream")
    w("")
    from benchmarks.common import machine_line

    w(f"Machine: {machine_line()}")
    w("")
    w(
        f"`make bench-peers` (`benchmarks/peers/run.py{' --quick' if meta['quick'] else ''}`), "
        f"{meta['runs']} run(s) per system, each against a fresh server on 127.0.0.1 with its "
        f"data in a temp dir on the same disk; median of the runs with [min-max]. Client and "
        f"server share the machine's {meta['cores']} cores. Wall time {meta['wall_s']:.0f} s."
    )
    w("")
    w("Versions:")
    w("")
    lines.extend(meta["versions"])
    w("")
    w("Configurations:")
    w("")
    lines.extend(configs(systems, plan))
    w("")
    n1, s1 = plan.small
    n2, s2 = plan.large
    nd, sd = plan.durable
    w(
        f"Workload: produce {n1:,} records of {s1} B and {n2:,} of {s2} B (incompressible "
        f"payloads); replay all from the start; consume with a group and acks/commits; "
        f"durable produce of {nd:,} x {sd} B; end-to-end latency at a steady "
        f"{plan.latency_rate:,.0f} records/s for {plan.latency_seconds:.0f} s ({s1} B, producer "
        f"in its own process, consumer reading as records arrive). Every read checks the "
        f"record count and the bytes; a row that failed says so."
    )
    w("")
    w("### Throughput (records/s, MB/s)")
    w("")
    latency_only = systems
    systems = [s for s in systems if s != "floor"]
    w("| workload | " + " | ".join(labels[s] for s in systems) + " |")
    w("| --- | " + " | ".join("---" for _ in systems) + " |")
    ops = [
        ("produce 100B", f"produce {s1} B"),
        ("replay 100B", f"replay {s1} B"),
        ("group 100B", f"group consume + acks {s1} B"),
        ("produce 1KiB", f"produce {s2} B"),
        ("replay 1KiB", f"replay {s2} B"),
        ("group 1KiB", f"group consume + acks {s2} B"),
        ("durable produce 100B", f"durable produce {sd} B"),
        (
            "queue 100B",
            f"work queue, {plan.queue_workers} worker processes, ack per message, {s1} B",
        ),
        ("produce per record", f"produce {s1} B, `send()` per record"),
        ("replay per record", f"replay {s1} B, `poll()` Record objects"),
    ]
    for key, title in ops:
        if not any(key in agg.get(s, {}) for s in systems):
            continue
        cells = []
        for s in systems:
            e = agg.get(s, {}).get(key)
            if e is None:
                cells.append("-")
            elif isinstance(e, str):
                cells.append(e.splitlines()[0][:120])
            else:
                m, lo, hi = e["rate"]
                spread = f" [{_fmt_rate(lo)}-{_fmt_rate(hi)}]" if e["runs"] > 1 else ""
                cells.append(f"{_fmt_rate(m)}/s{spread}, {e['mb_s'][0]:.1f} MB/s")
        w(f"| {title} | " + " | ".join(cells) + " |")
    w("")
    render_queue(w, plan, systems, labels, agg)
    w(f"### End-to-end latency at {plan.latency_rate:,.0f} records/s (ms)")
    w("")
    w("| system | p50 | p99 | p99.9 | max |")
    w("| --- | --- | --- | --- | --- |")
    rows = [(s, "latency", labels[s]) for s in latency_only]
    if "logstream" in latency_only:
        at = latency_only.index("logstream") + 1
        rows.insert(at, ("logstream", "latency poll", f"{labels['logstream']}, `poll()`"))
    for s, key, label in rows:
        e = agg.get(s, {}).get(key)
        if isinstance(e, dict):
            cells = [
                f"{e[q][0]:.3f}" + (f" [{e[q][1]:.3f}-{e[q][2]:.3f}]" if e["runs"] > 1 else "")
                for q in ("p50_ms", "p99_ms", "p999_ms", "max_ms")
            ]
            w(f"| {label} | " + " | ".join(cells) + " |")
        elif key == "latency" or e:
            w(f"| {label} | {e or '-'} | | | |")
    w("")
    rr_systems = [s for s in systems if s in REQUEST_REPLY]
    if any("request reply" in agg.get(s, {}) for s in rr_systems):
        w(
            f"### Request/reply round trip at {plan.rr_rate:,.0f} requests/s for "
            f"{plan.rr_seconds:g} s (ms)"
        )
        w("")
        w(
            f"One requester (open loop: paced sends, replies timestamped as they arrive), one "
            f"echo responder in its own process, {s1} B requests, every reply checked "
            "(benchmarks/peers/request_reply.py). logstream: `Requester.request_async` -> "
            "queue group (a push member, `QueueConsumer(push=True)`) -> `msg.reply()` + "
            "`ack()` -> in-memory inbox stream. NATS: core "
            "request/reply (`nc.request`, responder in a queue group, no JetStream). Redis: "
            "`LPUSH` request, responder `BRPOP` + `LPUSH` to the requester's reply list, "
            "requester `BRPOP`."
        )
        w("")
        w("| system | p50 | p99 | p99.9 | max | CPU us/request: broker, responder, requester |")
        w("| --- | --- | --- | --- | --- | --- |")
        for s in rr_systems:
            e = agg.get(s, {}).get("request reply")
            label = "NATS (core request/reply)" if s == "nats" else labels[s].split(" Streams")[0]
            if isinstance(e, dict):
                cells = [
                    f"{e[q][0]:.3f}" + (f" [{e[q][1]:.3f}-{e[q][2]:.3f}]" if e["runs"] > 1 else "")
                    for q in ("p50_ms", "p99_ms", "p999_ms", "max_ms")
                ]
                cpu = e.get("cpu_us")
                cells.append(", ".join(f"{v[0]:.0f}" for v in cpu.values()) if cpu else "-")
                w(f"| {label} | " + " | ".join(cells) + " |")
            elif e:
                w(f"| {label} | {str(e).splitlines()[0][:120]} | | | | |")
        w("")
    w(f"### Broker memory while the log grows (produce of {n1:,} x {s1} B, last run)")
    w("")
    w("RSS in MiB at 0 / 25 / 50 / 75 / 100 % of the produce (VmRSS; anonymous part in brackets:")
    w("file-backed pages of memory-mapped segments are page cache the kernel can drop).")
    w("")
    w("| system | RSS MiB | growth |")
    w("| --- | --- | --- |")
    for s in systems:
        e = agg.get(s, {}).get("produce 100B")
        if isinstance(e, dict) and e.get("rss_mib"):
            pts = " / ".join(
                f"{a:.0f} ({b:.0f})" for a, b in zip(e["rss_mib"], e["rss_anon_mib"], strict=True)
            )
            growth = e["rss_mib"][-1] - e["rss_mib"][0]
            anon = e["rss_anon_mib"][-1] - e["rss_anon_mib"][0]
            w(f"| {labels[s]} | {pts} | {growth:+.0f} MiB ({anon:+.0f} anon) |")
    w("")
    if "logstream" in systems and len(systems) > 1:
        w("### Ratios and targets (logstream / peer, medians)")
        w("")
        w("| target | ratio | verdict |")
        w("| --- | --- | --- |")
        for op_key, peer, need in TARGETS:
            if peer not in systems:
                continue
            r = _ratio(agg, op_key, peer)
            mine = agg.get("logstream", {}).get(op_key)
            if r is None:
                why = mine if isinstance(mine, str) else agg.get(peer, {}).get(op_key)
                verdict = f"n/a ({str(why).splitlines()[0][:80]})"
                w(f"| {op_key} >= {need:g}x {labels[peer]} | - | {verdict} |")
            else:
                verdict = "met" if r >= need else "MISSED"
                w(f"| {op_key} >= {need:g}x {labels[peer]} | {r:.2f}x | {verdict} |")
        render_secure(w, systems, labels, agg)
        for op_key in ("produce 1KiB", "replay 1KiB", "group 1KiB", "durable produce 100B"):
            for peer in systems:
                if peer in ("logstream", "secure"):
                    continue
                r = _ratio(agg, op_key, peer)
                if r is not None:
                    w(f"| {op_key} vs {labels[peer]} (no target) | {r:.2f}x | - |")
        lat = agg.get("logstream", {}).get("latency")
        if isinstance(lat, dict):
            p99 = lat["p99_ms"][0]
            w(
                f"| latency p99 <= 1 ms at {plan.latency_rate:,.0f}/s | {p99:.3f} ms | "
                f"{'met' if p99 <= 1.0 else 'MISSED'} |"
            )
            red = agg.get("redis", {}).get("latency")
            if isinstance(red, dict):
                r = lat["p50_ms"][0] / red["p50_ms"][0]
                w(
                    f"| latency p50 within 3x of Redis | {r:.2f}x Redis's | "
                    f"{'met' if r <= 3.0 else 'MISSED'} |"
                )
            floor = agg.get("floor", {}).get("latency")
            if isinstance(floor, dict):
                w(
                    f"| (the bare gRPC relay, same run) | p50 {floor['p50_ms'][0]:.3f} ms, "
                    f"p99 {floor['p99_ms'][0]:.3f} ms; logstream p50 "
                    f"{lat['p50_ms'][0] / floor['p50_ms'][0]:.1f}x the relay's | floor |"
                )
        mine = agg.get("logstream", {}).get("request reply")
        theirs = agg.get("nats", {}).get("request reply")
        if isinstance(mine, dict) and isinstance(theirs, dict):
            for q, name in (("p50_ms", "p50"), ("p99_ms", "p99")):
                r = mine[q][0] / theirs[q][0]
                w(
                    f"| request/reply {name} <= 2x NATS at {plan.rr_rate:,.0f}/s | "
                    f"{r:.2f}x ({mine[q][0]:.3f} vs {theirs[q][0]:.3f} ms) | "
                    f"{'met' if r <= 2.0 else 'MISSED'} |"
                )
        if rss is not None:
            w(f"| broker RSS flat while the log grows | {rss[0]} | {rss[1]} |")
        w("")
    if "kafka" in systems:
        render_kafka_targets(w, plan, agg)
    if scale:
        w("### logstream scale")
        w("")
        w(f"Produce then fetch {plan.scale_records:,} records of 100 B spread over N partitions:")
        w("")
        w("| partitions | produce rec/s | fetch rec/s |")
        w("| --- | --- | --- |")
        for parts in plan.scale_partitions:
            e = scale.get(f"partitions {parts}")
            if isinstance(e, dict):
                prod, fetch = _fmt_rate(e["produce_rate"]), _fmt_rate(e["fetch_rate"])
                w(f"| {parts} | {prod}/s | {fetch}/s |")
            else:
                w(f"| {parts} | {e} | |")
        w("")
        g = scale.get("growth")
        done = [r for r in g if "skipped" not in r] if isinstance(g, list) else []
        batch = f"{done[0]['batch_bytes'] >> 10} KiB" if done else "small"
        w(
            f"One partition growing, records of {plan.growth_record_bytes} B values produced "
            f"in {batch} batches (acks=leader): at each size, median of "
            f"{plan.lookup_samples} random timestamp lookups (ListOffsets) and of "
            f"{plan.lookup_samples} fetches of one record at a random offset (seek + poll; "
            "a fetch returns the whole batch holding the offset)."
        )
        w("")
        if isinstance(g, list):
            w(
                "| records in partition | offset lookup p50 ms | fetch p50 ms | fetch p99 ms "
                "| segments | log MB |"
            )
            w("| --- | --- | --- | --- | --- | --- |")
            for row in g:
                if "skipped" in row:
                    w(f"| {row['records']:,} | skipped: {row['skipped']} | | | | |")
                    continue
                # the sampling of one size is time-boxed: say so when it was cut short
                n = row["samples"]
                short = f" ({n} samples)" if n < plan.lookup_samples else ""
                w(
                    f"| {row['records']:,}{short} | {row['lookup_ms']:.3f} | "
                    f"{row['fetch_ms']:.3f} | {row['fetch_p99_ms']:.3f} | {row['segments']} | "
                    f"{row['log_bytes'] / 1e6:,.1f} |"
                )
            if done:
                w("")
                w(
                    f"Growing to {done[-1]['records']:,} records took "
                    f"{done[-1]['elapsed_s']:.1f} s ({done[-1]['produce_s']:.1f} s of it "
                    "producing, the rest sampling)."
                )
        else:
            w(f"growth: {g}")
        w("")
        w("Start-up (restart of a broker holding N partitions, one record each; 'ready' = the")
        w("start line printed and the port open, 'answering' = first ListTopics answered):")
        w("")
        w("| partitions | ready s | answering s | RSS MiB after start |")
        w("| --- | --- | --- | --- |")
        for row in scale.get("startup", []):
            if "error" in row:
                w(f"| {row['partitions']:,} | error: {row['error']} | | |")
            else:
                w(
                    f"| {row['partitions']:,} | {row['ready_s']:.2f} | "
                    f"{row['first_answer_s']:.2f} | {row['rss_mib']:.0f} |"
                )
        w("")
    return "\n".join(lines)


KAFKA_RATE_TARGETS = (("produce 100B", 1e6), ("replay 100B", 2e6))
KAFKA_CEILING = "benchmarks.peers.kafka_ceiling"
KAFKA_LATENCY_TARGETS = (("p50_ms", "p50", 0.3), ("p99_ms", "p99", 1.0))
KAFKA_P50_OF_REDIS = 2.0


def render_secure(w, systems: list[str], labels, agg) -> None:
    """TLS + token + ACLs against the plaintext broker of the same run: the 15% rows."""
    if "secure" not in systems:
        return
    for op_key in ("produce 100B", "replay 100B", "group 100B", "produce 1KiB", "replay 1KiB"):
        a = agg.get("secure", {}).get(op_key)
        b = agg.get("logstream", {}).get(op_key)
        target = op_key in ("produce 100B", "replay 100B")
        title = (
            f"{op_key} {labels['secure']} within 15% of plaintext"
            if target
            else f"{op_key} {labels['secure']} vs plaintext (no target)"
        )
        if not (isinstance(a, dict) and isinstance(b, dict)):
            why = a if isinstance(a, str) else b
            w(f"| {title} | - | n/a ({str(why).splitlines()[0][:80]}) |")
            continue
        r = a["rate"][0] / b["rate"][0]
        verdict = ("met" if r >= SECURE_TARGET else "MISSED") if target else "-"
        w(f"| {title} | {r:.2f}x | {verdict} |")


def render_kafka_targets(w, plan: Plan, agg) -> None:
    """The Kafka listener's targets (issue 18): absolute rates and latencies, and its
    latency p50 against Redis Streams' in the same run."""
    mine = agg.get("kafka", {})
    w("### Kafka listener targets (confluent-kafka through the listener, medians)")
    w("")
    w("| target | measured | verdict |")
    w("| --- | --- | --- |")
    for key, need in KAFKA_RATE_TARGETS:
        e = mine.get(key)
        if isinstance(e, dict):
            got = e["rate"][0]
            verdict = "met" if got >= need else "MISSED"
            w(f"| {key} >= {_fmt_rate(need)}/s | {_fmt_rate(got)}/s | {verdict} |")
        else:
            w(f"| {key} >= {_fmt_rate(need)}/s | - | n/a ({str(e).splitlines()[0][:80]}) |")
    ceiling, replayed = mine.get("replay ceiling 100B"), mine.get("replay 100B")
    if isinstance(ceiling, dict) and isinstance(replayed, dict) and ceiling["rate"][0] > 0:
        top = ceiling["rate"][0]
        w(
            "| (not a target) the same replay from a Kafka server answering from memory "
            f"(`kafka_ceiling.py`): the client's ceiling | {_fmt_rate(top)}/s | the listener "
            f"reads {replayed['rate'][0] / top:.0%} of it |"
        )
    lat = mine.get("latency")
    rate = f"{plan.latency_rate:,.0f}/s"
    if not isinstance(lat, dict):
        w(f"| latency at {rate} | - | n/a ({str(lat).splitlines()[0][:80]}) |")
        w("")
        return
    for q, name, need in KAFKA_LATENCY_TARGETS:
        got = lat[q][0]
        verdict = "met" if got <= need else "MISSED"
        w(f"| latency {name} <= {need:g} ms at {rate} | {got:.3f} ms | {verdict} |")
    red = agg.get("redis", {}).get("latency")
    if isinstance(red, dict):
        r = lat["p50_ms"][0] / red["p50_ms"][0]
        w(
            f"| latency p50 within {KAFKA_P50_OF_REDIS:g}x of Redis Streams | {r:.2f}x "
            f"({lat['p50_ms'][0]:.3f} vs {red['p50_ms'][0]:.3f} ms) | "
            f"{'met' if r <= KAFKA_P50_OF_REDIS else 'MISSED'} |"
        )
    w("")


def render_queue(w, plan: Plan, systems: list[str], labels, agg) -> None:
    """The work-queue rows: CPU per acknowledged record, and logstream's timing."""
    cells = []
    for s in systems:
        e = agg.get(s, {}).get("queue 100B")
        if isinstance(e, dict) and "server_cpu_us" in e:
            cells.append(
                f"| {labels[s]} | {e['rate'][0]:,.0f} | {e['server_cpu_us'][0]:.2f} | "
                f"{e['worker_cpu_us'][0]:.2f} |"
            )
    if cells:
        w(
            f"Work queue ({plan.queue_records:,} records of 100 B, {plan.queue_workers} worker "
            "processes, every record acknowledged on its own; logstream: a queue group on 4 "
            "partitions, `QueueConsumer(max_records=100)`; Redis: `XREADGROUP COUNT 100` + "
            "`XACK`; NATS: a durable pull consumer, `fetch(100)` + `ack()` each). CPU time "
            "per acknowledged record over the timed window, which starts once every worker "
            "is connected (server process: every thread's schedstat; the workers together), "
            "medians; comparable on a loaded machine where the rate is not:"
        )
        w("")
        w("| system | acks/s | server CPU us/ack | workers CPU us/ack |")
        w("| --- | --- | --- | --- |")
        for c in cells:
            w(c)
        w("")
    t = agg.get("logstream", {}).get("queue timing")
    if isinstance(t, dict):
        w(
            f"logstream queue timing ({t['nack_late']['n']} records each, last run): a nacked "
            f"record's redelivery and a silent member's records' takeover, in ms after the "
            f"nack delay / lease ({t['delay_ms']} ms) ran out (takeover measured from when the "
            "acquiring fetch returned):"
        )
        w("")
        w("| event | p50 ms | p99 ms | max ms |")
        w("| --- | --- | --- | --- |")
        for key, label in (
            ("nack_late", "nack -> redelivery"),
            ("lease_late", "lease out -> other member"),
        ):
            v = t[key]
            w(f"| {label} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {v['max_ms']:.1f} |")
        w("")


def rss_verdict(agg) -> tuple[str, str] | None:
    e = agg.get("logstream", {}).get("produce 100B")
    if not isinstance(e, dict) or not e.get("rss_anon_mib"):
        return None
    anon = e["rss_anon_mib"]
    mid, end = anon[2], anon[-1]
    # flat: the second half of the produce adds little anonymous memory
    grew = end - mid
    return (
        f"anon {anon[0]:.0f} -> {mid:.0f} -> {end:.0f} MiB (2nd half {grew:+.0f} MiB)",
        "met" if grew <= max(32.0, 0.1 * end) else "MISSED",
    )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny counts, one run (< 60 s)")
    ap.add_argument("--runs", type=int, default=None, help="runs per system (median)")
    ap.add_argument("--systems", default="redis,nats,logstream,secure,kafka,floor")
    ap.add_argument("--no-scale", action="store_true", help="skip the logstream scale table")
    ap.add_argument(
        "--workloads",
        default=None,
        help=f"run only these (comma-separated: {', '.join(WORKLOADS)}); default all",
    )
    ap.add_argument(
        "--no-warmup",
        action="store_true",
        help="no page cache warm-up before produce workloads (A/B of the warm-up itself)",
    )
    ap.add_argument("--no-install", action="store_true", help="do not apt-get / pip install")
    ap.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    ap.add_argument("--json", type=Path, default=None, help="also dump raw results as JSON")
    args = ap.parse_args(argv)

    plan = QUICK if args.quick else FULL
    runs = args.runs or plan.runs
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        ap.error(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    only = None
    if args.workloads:
        only = frozenset(w.strip() for w in args.workloads.split(",") if w.strip())
        if only - set(WORKLOADS):
            ap.error(f"unknown workloads {sorted(only - set(WORKLOADS))}")
    t_start = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", flush=True)

    need = [b for s, b in (("redis", "redis-server"), ("nats", "nats-server")) if s in systems]
    if not args.no_install:
        servers.ensure_apt(need)
        servers.ensure_pip()
    missing = servers.missing_binaries(need)
    if missing:
        print(f"missing {missing}; run without --no-install (needs root for apt-get)")
        return 2

    meta: dict[str, object] = {
        "quick": args.quick,
        "runs": runs,
        "cores": mp.cpu_count(),
        "versions": versions(systems),
    }
    for line in meta["versions"]:
        log(line)
    all_runs: dict[str, list[dict[str, object]]] = {s: [] for s in systems}
    for run_no in range(1, runs + 1):
        for system in systems:
            log(f"run {run_no}/{runs}: {SYSTEMS[system][1]}")
            try:
                result = run_system(system, plan, run_no, log, only, not args.no_warmup)
                all_runs[system].append(result)
            except Exception as e:  # the server itself did not start
                log(f"  {system}: {e}")
                all_runs[system].append({"produce 100B": f"error: {str(e).splitlines()[0]}"})
    scale = None
    if "logstream" in systems and not args.no_scale:
        log("logstream scale table")
        try:
            scale = run_scale(plan, log)
        except Exception as e:
            log(f"  scale: {e}")
            scale = {"startup": [{"partitions": 0, "error": str(e).splitlines()[0]}]}
    agg = aggregate(all_runs)
    meta["wall_s"] = time.monotonic() - t_start
    md = render(plan, systems, agg, scale, rss_verdict(agg), meta)
    from benchmarks.common import write_section

    write_section(SECTION, md, args.results)
    log(f"wrote the '{SECTION}' section of {args.results}")
    if args.json:
        raw = {
            s: [
                {k: (v.to_dict() if isinstance(v, Result) else v) for k, v in r.items()} for r in rs
            ]
            for s, rs in all_runs.items()
        }
        args.json.write_text(json.dumps({"runs": raw, "scale": scale}, indent=1, default=str))
    print(md)
    failed = [
        f"{s}: {k}: {v}"
        for s, ops in agg.items()
        for k, v in ops.items()
        if isinstance(v, str) and not v.startswith(("not yet available", "n/a"))
    ]
    for f in failed:
        print(f"FAILED {f.splitlines()[0]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
