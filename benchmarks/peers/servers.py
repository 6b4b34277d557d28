"""Install, start and stop the servers the peer benchmark compares.

Everything here is loopback-only and owns exactly what it starts: each server runs in its own
session (process group) with its data in a fresh temporary directory, and ``stop()`` signals
that process id only, then removes the directory.

Installs happen only when something is missing, and say what they install:

* Debian's ``redis-server`` and ``nats-server`` through ``apt-get``;
* the ``bench`` extra's clients (redis + hiredis, nats-py) through pip into this interpreter.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

APT_PACKAGES = {"redis-server": "redis-server", "nats-server": "nats-server"}
PIP_REQUIREMENTS = {"redis": "redis>=5", "hiredis": "hiredis>=2", "nats": "nats-py>=2.6"}
ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- installs


def missing_binaries(binaries: list[str] | None = None) -> list[str]:
    """Which of ``binaries`` (None: every peer server) are not on PATH; an empty list
    needs none (``--systems logstream,secure`` runs without Redis or NATS installed)."""
    wanted = list(APT_PACKAGES) if binaries is None else binaries
    return [b for b in wanted if shutil.which(b) is None]


def ensure_apt(binaries: list[str] | None = None) -> None:
    """apt-get install the Debian packages whose binaries are missing (root only)."""
    missing = missing_binaries(binaries)
    if not missing:
        return
    packages = [APT_PACKAGES[b] for b in missing]
    print(f"[servers] installing Debian packages: {' '.join(packages)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
    )
    still = missing_binaries(binaries)
    if still:
        raise RuntimeError(f"apt-get did not provide {still}")


def ensure_pip() -> None:
    """pip install the benchmark clients into this interpreter when they are missing."""
    find = importlib.util.find_spec
    missing = [req for mod, req in PIP_REQUIREMENTS.items() if find(mod) is None]
    if not missing:
        return
    print(f"[servers] pip installing into {sys.prefix}: {' '.join(missing)}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    importlib.invalidate_caches()


# --------------------------------------------------------------------------- versions


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def redis_server_version() -> str:
    line = _first_line(["redis-server", "--version"])
    # "Redis server v=7.0.15 sha=... bits=64 build=..."
    for part in line.split():
        if part.startswith("v="):
            return part[2:]
    return line


def nats_server_version() -> str:
    line = _first_line(["nats-server", "--version"])  # "nats-server: v2.9.10"
    return line.split()[-1].lstrip("v") if line != "unknown" else line


def debian_package_version(package: str) -> str:
    line = _first_line(["dpkg-query", "-W", "-f=${Version}", package])
    return line


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS / RssAnon / RssFile of ``pid`` in KiB (empty when the process is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


PAGE_CACHE_WARMUP_MB = 256
"""The least :func:`warm_page_cache` touches before a produce workload; ``warmup_mb`` asks
for twice the log a workload writes when that is more (200,000 x 1 KiB: ~400 MiB)."""


def warmup_mb(records: int, size: int) -> int:
    """MiB to warm before producing ``records`` x ``size`` B (their log, with room for
    record headers, the index and what other processes take meanwhile)."""
    return max(PAGE_CACHE_WARMUP_MB, 2 * records * size >> 20)


def warm_page_cache(mb: int = PAGE_CACHE_WARMUP_MB) -> float:
    """Write-fault ``mb`` MiB of a fresh file-backed map in the temp dir, delete it, and
    return the CPU it took per 4 KiB page (microseconds).

    Why: on this VM, the first new page-cache pages after a few seconds without such
    allocations cost ~20-30 us of kernel CPU each instead of ~0.8 us (most likely host-side
    faults on guest memory the balloon's free page reporting gave back). A produce that
    starts after a quiet gap (the TLS + token + ACLs system's setup runs six offline CLI
    commands, ~4 s; the plaintext broker starts in ~0.4 s) pays that for its first ~100-200
    MB of log, in the broker's prefault thread and in its appends. Called before every
    system's produce workload, so each one starts from the same state; the pages are freed
    again at once, so it changes nothing else."""
    import ctypes
    import mmap

    size = mb << 20
    fd, path = tempfile.mkstemp(prefix="logstream-bench-warm-")
    try:
        os.unlink(path)
        os.posix_fallocate(fd, 0, size)
        t0 = time.process_time()
        with mmap.mmap(fd, size) as m:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            view = ctypes.c_char.from_buffer(m)
            populated = libc.madvise(ctypes.addressof(view), size, 23) == 0  # POPULATE_WRITE
            del view
            if not populated:  # kernel < 5.14: touch one byte per page instead
                for off in range(0, size, mmap.PAGESIZE):
                    m[off] = 0
        return (time.process_time() - t0) / (size / 4096) * 1e6
    finally:
        os.close(fd)


@dataclass
class Server:
    """One server process we started, with its temp dir and log file."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    ready_line: str | None = None
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def start(self, timeout: float = 30.0) -> Server:
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.extra["log"] = log
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if _port_open(self.port) and (
                self.ready_line is None or self.ready_line in self.log_text()
            ):
                self.extra["started_s"] = timeout - (deadline - time.monotonic())
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log_tail()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def rss(self) -> dict[str, int]:
        return rss_kib(self.pid) if self.proc else {}

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far, all threads (0.0 when gone)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except (OSError, AssertionError):
            return 0.0
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def disk_bytes(self) -> int:
        total = 0
        for p in self.workdir.rglob("*"):
            try:
                if p.is_file():
                    total += p.stat().st_size
            except OSError:
                pass
        return total

    def stop(self, keep_dir: bool = False) -> None:
        """SIGTERM our process (by pid), SIGKILL after 10 s, then remove the temp dir."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        log = self.extra.pop("log", None)
        if log is not None:
            log.close()
        if not keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"logstream-bench-{prefix}-"))


def redis_server(appendfsync: str = "everysec") -> Server:
    """redis-server on a free loopback port, AOF on (``appendfsync`` everysec by default)."""
    port = free_port()
    wd = _workdir("redis")
    argv = [
        "redis-server",
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(wd),
        "--appendonly", "yes",
        "--appendfsync", appendfsync,
        "--save", "",
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--logfile", "",
    ]  # fmt: skip
    srv = Server("redis-server", argv, port, wd, ready_line="Ready to accept connections")
    srv.extra["config"] = (
        f"appendonly yes, appendfsync {appendfsync}, RDB snapshots off, "
        "no maxmemory (the whole stream lives in RAM)"
    )
    return srv.start()


def nats_server() -> Server:
    """nats-server with JetStream file storage in a temp dir on a free loopback port."""
    port = free_port()
    wd = _workdir("nats")
    store = wd / "jetstream"
    argv = ["nats-server", "-js", "-sd", str(store), "-p", str(port), "-a", "127.0.0.1"]
    srv = Server("nats-server", argv, port, wd, ready_line="Server is ready")
    srv.extra["config"] = (
        "-js -sd <tmp>: JetStream file storage, default sync (the OS flushes; "
        "no fsync per acknowledgement in 2.9), one stream, R1"
    )
    return srv.start()


def _logstream_env(root: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    tree = str(root or ROOT)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
    return env


def logstream_broker(
    python: str | None = None,
    extra_args: list[str] | None = None,
    root: Path | None = None,
    workdir: Path | None = None,
) -> Server:
    """``python -m logstream serve`` on a free loopback port with a temp data dir
    (``workdir``/data when given: prepared before the start); ``root``: another
    checkout's tree to run (an A/B against a base commit), else this one."""
    port = free_port()
    wd = workdir or _workdir("logstream")
    data = wd / "data"
    data.mkdir(exist_ok=True)
    argv = [
        python or sys.executable,
        "-m", "logstream", "serve",
        "--data-dir", str(data),
        "--listen", f"127.0.0.1:{port}",
        *(extra_args or []),
    ]  # fmt: skip
    srv = Server("logstream", argv, port, wd, ready_line="listening on", env=_logstream_env(root))
    srv.extra["config"] = "python -m logstream serve, defaults (segment files in a temp dir)"
    return srv.start(timeout=60.0)


def _logstream_cli(*args: str) -> str:
    """Run ``python -m logstream ARGS`` (an offline command) and return its stdout."""
    out = subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        capture_output=True,
        text=True,
        env=_logstream_env(),
        timeout=60,
    )
    if out.returncode:
        raise RuntimeError(f"logstream {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


SECURE_PRINCIPAL = "bencher"


def logstream_secure() -> Server:
    """The broker with TLS (``logstream certs dev``), ``--auth`` and ``--acls``: one user
    (not a super user) whose rules allow exactly what the produce, replay and group
    workloads do, written offline before the start. ``extra["client_env"]``: what a client
    process needs (its token, the CA; see ``logstream_adapter.client_security``)."""
    wd = _workdir("logstream-secure")
    data, tls = wd / "data", wd / "tls"
    _logstream_cli("certs", "dev", str(tls))
    token = _logstream_cli("user", "add", SECURE_PRINCIPAL, "--data-dir", str(data)).strip()
    ops = ("create", "write", "read")
    rules = [("--topic", "bench", "--prefix", "--operation", op) for op in ops]
    rules.append(("--group", "bench", "--operation", "read"))
    for rule in rules:
        _logstream_cli(
            "acl", "add", "--principal", SECURE_PRINCIPAL, *rule, "--allow",
            "--data-dir", str(data),
        )  # fmt: skip
    srv = logstream_broker(
        extra_args=[
            "--tls-cert", str(tls / "server.pem"),
            "--tls-key", str(tls / "server.key"),
            "--auth", "--acls",
        ],
        workdir=wd,
    )  # fmt: skip
    srv.name = "logstream-secure"
    srv.extra["config"] = (
        "python -m logstream serve --tls-cert/--tls-key (certs dev) --auth --acls, defaults"
    )
    srv.extra["client_env"] = {
        "LOGSTREAM_TOKEN": token,
        "LOGSTREAM_BENCH_CA": str(tls / "ca.pem"),
    }
    return srv


def logstream_kafka(root: Path | None = None) -> Server:
    """The broker with its Kafka listener; the server's address is the Kafka one."""
    kafka_port = free_port()
    srv = logstream_broker(extra_args=["--kafka-listen", f"127.0.0.1:{kafka_port}"], root=root)
    deadline = time.monotonic() + 30
    while not _port_open(kafka_port):
        if time.monotonic() > deadline:
            srv.stop()
            raise RuntimeError(f"the Kafka listener did not open:\n{srv.log_tail()}")
        time.sleep(0.02)
    srv.name = "logstream-kafka"
    srv.port = kafka_port
    srv.extra["config"] = "python -m logstream serve --kafka-listen, defaults"
    return srv
