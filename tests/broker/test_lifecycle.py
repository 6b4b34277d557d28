"""Broker process lifecycle: SIGTERM shuts down cleanly; SIGKILL loses no acknowledged
record; idempotent retries across a crash write every record exactly once."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from broker_helpers import Client

from logstream.codec import encode_batch
from logstream.protocol import log_pb2
from logstream.testing.broker import BrokerProcess


def test_sigterm_is_a_clean_shutdown_and_restart_serves_everything(tmp_path):
    data = tmp_path / "data"
    proc = BrokerProcess(data).start()
    client = Client(proc.address)
    client.create_topic("keep", partitions=2)
    for p in range(2):
        for i in range(20):
            client.produce("keep", p, encode_batch([b"%d-%d" % (p, i)] * 3))
    client.close()
    assert proc.terminate() == 0
    assert (data / ".clean-shutdown").exists()
    out = proc.output()
    assert "shutting down" in out and "broker stopped" in out

    proc.start()
    try:
        client = Client(proc.address)
        for p in range(2):
            got = [v for _, v in client.read_all("keep", p)]
            assert got == [b"%d-%d" % (p, i) for i in range(20) for _ in range(3)]
        client.close()
        assert "clean" in proc.output()
    finally:
        assert proc.terminate() == 0


def test_sigint_also_shuts_down_cleanly(tmp_path):
    proc = BrokerProcess(tmp_path / "data").start()
    assert proc.interrupt() == 0
    assert (tmp_path / "data" / ".clean-shutdown").exists()


def test_sigkill_mid_stream_idempotent_produce_keeps_every_acked_record_once(tmp_path):
    proc = BrokerProcess(tmp_path / "data").start()
    client = Client(proc.address)
    client.create_topic("crash")
    pid = client.log.InitProducerId(log_pb2.InitProducerIdRequest(), timeout=5)
    total, per_batch = 400, 5
    acked: list[int] = []
    errors: list[str] = []

    def producer() -> None:
        seq = 0
        for n in range(total):
            batch = encode_batch(
                [b"%06d" % (n * per_batch + i) for i in range(per_batch)],
                producer_id=pid.producer_id,
                producer_epoch=pid.producer_epoch,
                base_sequence=seq,
            )
            deadline = time.monotonic() + 30
            while True:  # retry the same batch (same sequence) until acknowledged
                try:
                    res = client.produce("crash", 0, batch, timeout=2)
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        errors.append(f"batch {n}: gave up")
                        return
                    time.sleep(0.05)
                    continue
                if res.error_code == 0 and res.results[0].error_code == 0:
                    break
                errors.append(f"batch {n}: {res}")
                return
            acked.append(n)
            seq += per_batch

    t = threading.Thread(target=producer)
    t.start()
    while len(acked) < total // 3 and t.is_alive():
        time.sleep(0.005)
    proc.kill()
    acked_at_kill = len(acked)
    proc.start()  # same port: the producer's channel reconnects
    t.join(60)
    assert not errors, errors
    assert len(acked) == total and acked_at_kill < total

    values = [v for _, v in client.read_all("crash")]
    expected = [b"%06d" % i for i in range(total * per_batch)]
    assert values == expected  # every record exactly once, in order
    assert "recovered" in proc.output() or "unclean" in proc.output()
    client.close()
    assert proc.terminate() == 0


def test_producer_ids_are_never_reused_after_restart(tmp_path):
    proc = BrokerProcess(tmp_path / "data").start()
    client = Client(proc.address)
    before = {
        client.log.InitProducerId(log_pb2.InitProducerIdRequest()).producer_id for _ in range(3)
    }
    named = client.log.InitProducerId(log_pb2.InitProducerIdRequest(producer_name="w"))
    client.close()
    proc.kill()
    proc.start()
    client = Client(proc.address)
    after = {
        client.log.InitProducerId(log_pb2.InitProducerIdRequest()).producer_id for _ in range(3)
    }
    named2 = client.log.InitProducerId(log_pb2.InitProducerIdRequest(producer_name="w"))
    assert not before & after
    assert named2.producer_id == named.producer_id
    assert named2.producer_epoch == named.producer_epoch + 1
    client.close()
    proc.terminate()


# serve() in the main thread; once it waits, SIGTERM is sent to another thread of the process
# (as the kernel may pick a gRPC thread for a kill(pid, SIGTERM)): Python runs the handler on
# the main thread only, so a main thread blocked in a wait that the signal cannot interrupt
# never stops.
SIGNAL_ANOTHER_THREAD = """
import io, signal, sys, threading, time
from pathlib import Path
from logstream.broker import build_config, serve
from logstream.testing.wait import wait_for

started = threading.Event()
main = threading.main_thread().ident

class Out(io.TextIOWrapper):
    def write(self, s):
        if "broker listening on" in s:
            started.set()
        return super().write(s)

sys.stdout = Out(sys.stdout.detach(), line_buffering=True)

def blocked() -> bool:
    frame = sys._current_frames()[main]
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return "serve" in names and names[0] in ("serve", "wait")  # in its wait, not printing

def kill_from_here() -> None:
    started.wait(30)
    wait_for(blocked, what="serve() waiting")
    time.sleep(0.05)  # in the blocking call itself, not on the bytecodes before it
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=kill_from_here, daemon=True).start()
config = build_config(None, data_dir=Path(sys.argv[1]), listen="127.0.0.1:0")
sys.exit(serve(config))
"""


def test_sigterm_taken_by_another_thread_still_stops_the_broker(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_ANOTHER_THREAD, str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"the broker did not stop on SIGTERM:\n{out[-3000:]}") from None
    assert proc.returncode == 0, out[-3000:]
    assert "broker listening on" in out, out[-3000:]
    assert (tmp_path / "data" / ".clean-shutdown").exists()  # stopped, not killed


# ``logstream serve`` run as the installed script runs it (``logstream.__main__.run``, also
# what ``python -m logstream`` runs); with HANG_STOP its shutdown hangs, as a stuck one would.
SERVE_AS_THE_SCRIPT = """
import os, sys, time
if os.environ.get("HANG_STOP"):
    from logstream.broker.server import BrokerServer
    BrokerServer.stop = lambda self, grace=None: time.sleep(30)
from logstream.__main__ import run
sys.argv[0] = "logstream"
run()
"""


def _serve_as_the_script(data: Path, **extra: str) -> BrokerProcess:
    return BrokerProcess(
        data, env=extra, launcher=[sys.executable, "-c", SERVE_AS_THE_SCRIPT]
    ).start()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_repeated_while_stopping_is_the_same_clean_stop(tmp_path, sig):
    """Ctrl-C pressed twice, or ``timeout`` signalling the command and then its process group:
    repeats soon after the first are part of the same stop (docs/cli.md). The broker used to
    put the previous handlers back before stopping, so a repeat landing in the stop cut it
    short: 'interrupted', exit 130, for SIGINT; a death by SIGTERM for SIGTERM."""
    from logstream.interrupts import REPEAT_GRACE_S

    proc = _serve_as_the_script(tmp_path / "data")
    assert proc.proc is not None
    proc.proc.send_signal(sig)
    storm_end = time.monotonic() + REPEAT_GRACE_S / 2
    while proc.proc.poll() is None and time.monotonic() < storm_end:
        with contextlib.suppress(ProcessLookupError):
            proc.proc.send_signal(sig)
        time.sleep(0.0005)
    code = proc.proc.wait(timeout=20)
    proc.terminate()  # it has exited: only collects its output
    out = proc.output()
    assert code == 0, out[-3000:]
    assert "broker stopped" in out and "interrupted" not in out, out[-3000:]
    assert (tmp_path / "data" / ".clean-shutdown").exists()


def test_ctrl_c_again_after_the_grace_quits_a_hung_stop(tmp_path):
    from logstream.interrupts import REPEAT_GRACE_S

    proc = _serve_as_the_script(tmp_path / "data", HANG_STOP="1")
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):  # stopping hangs: the first Ctrl-C waits
        proc.proc.wait(timeout=REPEAT_GRACE_S + 0.2)
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(timeout=5) == 130
    proc.terminate()
    assert "interrupted again: quitting without closing" in proc.output()
