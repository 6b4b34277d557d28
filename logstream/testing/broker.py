"""Run a real logstream broker in tests: in-process (:func:`run_broker`) or as a child
process (:class:`BrokerProcess`) that can be SIGKILLed and restarted.

In-process::

    with run_broker(tmp_path, auto_create_topics=True) as b:
        channel = grpc.insecure_channel(b.address)   # "127.0.0.1:PORT"
        ...                                          # b.broker is the Broker object

Subprocess (``python -m logstream serve --listen 127.0.0.1:0``; the port is parsed from the
start line ``logstream broker listening on 127.0.0.1:PORT (data: DIR)``)::

    proc = BrokerProcess(tmp_path / "data", auto_create_topics=True).start()
    proc.address; proc.kill(); proc.restart(); proc.terminate()  # -> exit code
    proc.interrupt()                                             # SIGINT
    proc.output()                                                 # everything it printed

Keyword arguments are :class:`~logstream.broker.BrokerConfig` fields; ``topic_defaults``
is a dict of topic config. For a subprocess they are written to a TOML file.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_LINE = re.compile(r"logstream broker listening on (\S+):(\d+) \(data: (.*)\)")


@dataclass
class RunningBroker:
    """What :func:`run_broker` yields."""

    address: str
    port: int
    data_dir: Path
    broker: Any  # logstream.broker.Broker
    server: Any  # logstream.broker.BrokerServer

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace)


@contextlib.contextmanager
def run_broker(data_dir: str | os.PathLike[str], **config: Any) -> Iterator[RunningBroker]:
    """An in-process broker on a free 127.0.0.1 port, stopped (gracefully) on exit."""
    from logstream.broker import BrokerConfig, create_server

    config.setdefault("listen", "127.0.0.1:0")
    cfg = BrokerConfig(data_dir=Path(data_dir), **config)
    server, port, broker = create_server(cfg)
    server.start()
    try:
        yield RunningBroker(f"127.0.0.1:{port}", port, cfg.data_dir, broker, server)
    finally:
        server.stop(1.0)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {value!r} as TOML")


def write_config_toml(path: str | os.PathLike[str], config: Mapping[str, Any]) -> Path:
    """Write BrokerConfig fields (and a ``topic_defaults`` table) as a TOML file."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if k != "topic_defaults"]
    if config.get("topic_defaults"):
        lines.append("[topic_defaults]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in config["topic_defaults"].items()]
    out = Path(path)
    out.write_text("\n".join(lines) + "\n")
    return out


class BrokerProcess:
    """``python -m logstream serve`` in a child process on a 127.0.0.1 port (``launcher``:
    another command line before ``serve``)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int = 0,
        start_timeout: float = 20.0,
        log_level: str = "INFO",
        env: Mapping[str, str] | None = None,
        launcher: Sequence[str] = (),
        **config: Any,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.launcher = list(launcher) or [sys.executable, "-m", "logstream"]
        self.port = port
        self.start_timeout = start_timeout
        self.log_level = log_level
        self.config = config
        self.env = dict(env or {})
        self.proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._reader: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        with self._lines_lock:
            return "".join(self._lines)

    def start(self) -> BrokerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            *self.launcher,
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--log-level",
            self.log_level,
        ]
        if self.config:
            toml = write_config_toml(
                self.data_dir.parent / f"{self.data_dir.name}.toml", self.config
            )
            cmd += ["--config", str(toml)]
        env = {**os.environ, **self.env}
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        started = threading.Event()
        found: list[int] = []

        def read(stream: Any) -> None:
            for line in stream:
                with self._lines_lock:
                    self._lines.append(line)
                m = START_LINE.search(line)
                if m and not found:
                    found.append(int(m.group(2)))
                    started.set()
            started.set()  # EOF: the process died before printing the start line

        self._reader = threading.Thread(target=read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        if not started.wait(self.start_timeout) or not found:
            self.kill()
            raise RuntimeError(f"broker did not start:\n{self.output()}")
        self.port = found[0]
        return self

    def kill(self) -> int:
        """SIGKILL (a crash: no flush, no clean-shutdown marker); returns the exit code."""
        return self._signal(signal.SIGKILL)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (graceful shutdown); returns the exit code (0 on a clean stop)."""
        return self._signal(signal.SIGTERM, timeout)

    def interrupt(self, timeout: float = 20.0) -> int:
        """SIGINT (Ctrl-C: also a graceful shutdown); returns the exit code."""
        return self._signal(signal.SIGINT, timeout)

    def _signal(self, sig: int, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        return code

    def restart(self, *, kill: bool = False, same_port: bool = True) -> BrokerProcess:
        """Stop (SIGTERM, or SIGKILL with ``kill``) and start again on the same data dir."""
        if kill:
            self.kill()
        else:
            self.terminate()
        if not same_port:
            self.port = 0
        return self.start()

    def __enter__(self) -> BrokerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
