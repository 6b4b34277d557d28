"""Ctrl-C at any moment of ``tail -f`` (while starting, connecting, reading, following) is
a normal stop: exit 0, the summary or nothing, never click's "Aborted!" nor a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from test_cli_process import env

from logstream.interrupts import REPEAT_GRACE_S
from logstream.testing.broker import RunningBroker, run_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with run_broker(tmp_path_factory.mktemp("data")) as b:
        b.broker.manager.create_topic("t-int", 2)
        yield b


def _catches_sigint(pid: int) -> bool:
    """True once the child exec'd the CLI and its interpreter catches SIGINT (just after the
    fork, the copy of this test process still shows its parent's handler)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        if b"logstream" not in f.read():
            return False
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


@pytest.mark.parametrize("command", [["tail", "t-int", "-f"], ["consume", "t-int"]])
# 0.2-0.3 s: the CLI is still importing the subcommand's modules (where a Ctrl-C can land in
# a string exec, a weakref callback or numpy's C import code: see the tests below and
# Interrupted in logstream/cli/lazy_group.py); from 0.4 s on it is connecting, reading, following.
@pytest.mark.parametrize("delay", [0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5])
def test_ctrl_c_at_any_moment_exits_0(broker: RunningBroker, command, delay: float) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "logstream", *command],
        env=env(broker),
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 200),
    )
    try:
        # Counted from when the interpreter catches SIGINT (before that the kernel kills
        # any process; just after it, Python's own start-up - the site module - dies on
        # a KeyboardInterrupt before any code of ours runs).
        deadline = time.monotonic() + 10
        while not _catches_sigint(child.pid) and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        child.kill(signal.SIGINT)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    out = child.before or ""
    assert "Aborted!" not in out and "Traceback" not in out and "interrupted" not in out, out
    assert child.signalstatus is None and child.exitstatus == 0, (child.exitstatus, out)


def test_ctrl_c_in_a_string_exec_is_not_a_death_by_signal(tmp_path: Path) -> None:
    """The mechanism behind the start-up flake, made deterministic: under ``python -m``, a
    KeyboardInterrupt leaving code run by a string ``exec`` (as dataclasses and namedtuple do
    while a module is imported) makes CPython kill the process with SIGINT at exit, even
    though it was caught. The CLI's handler raises a subclass, which does not."""
    (tmp_path / "ki_in_exec.py").write_text(
        "import signal, sys\n"
        "from logstream.cli.lazy_group import interrupt_handler\n"
        "if sys.argv[1] == 'cli':\n"
        "    signal.signal(signal.SIGINT, interrupt_handler)\n"
        # Python's own, also when this test runs in a background job (SIGINT ignored there,
        # and a Python started with SIGINT ignored keeps it ignored)
        "else:\n"
        "    signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "try:\n"
        # the sleeps keep the eval loop inside the exec'd string until the handler has run
        "    exec('import signal, time\\nsignal.raise_signal(signal.SIGINT)\\n"
        "for _ in range(500): time.sleep(0.002)')\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(0)\n"
    )
    run_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))

    def status(handler: str) -> int:
        proc = subprocess.run(
            [sys.executable, "-m", "ki_in_exec", handler], env=run_env, capture_output=True
        )
        return proc.returncode

    if sys.version_info[:2] in ((3, 11), (3, 12)):  # the CPython behaviour the handler avoids
        assert status("default") == -signal.SIGINT
    assert status("cli") == 0


# A Ctrl-C while ``logstream.cli.tail`` is imported, made to land (deterministically, from a
# sitecustomize import hook) where the start-up flakes had it land.
_LANDINGS = {
    # in a string exec (dataclasses, namedtuple): under -m, CPython re-kills with SIGINT
    "string-exec": (
        "exec('import signal, time\\nsignal.raise_signal(signal.SIGINT)\\n"
        "for _ in range(500): time.sleep(0.002)')"
    ),
    # in a weakref callback (importlib's module locks): Python drops the exception
    "weakref-callback": (
        "import weakref\n"
        "        class A: pass\n"
        "        a = A(); r = weakref.ref(a, lambda _: signal.raise_signal(signal.SIGINT))\n"
        "        del a\n"
        "        for _ in range(100): time.sleep(0.01)"
    ),
    # in C code that prints it and raises its own error (numpy's import_array)
    "converted": (
        "try:\n"
        "            signal.raise_signal(signal.SIGINT)\n"
        "        except KeyboardInterrupt:\n"
        "            sys.excepthook(*sys.exc_info())\n"
        "            raise ImportError('numpy._core.multiarray failed to import') from None"
    ),
}


@pytest.mark.parametrize("landing", sorted(_LANDINGS))
@pytest.mark.parametrize("command", [["tail", "t-int", "-f"], ["topic", "list"]])
def test_ctrl_c_while_importing_a_subcommand(tmp_path: Path, landing: str, command) -> None:
    module = "logstream.cli." + command[0]
    (tmp_path / "sitecustomize.py").write_text(
        "import signal, sys, time\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name != {module!r}:\n"
        "            return None\n"
        "        sys.meta_path.remove(self)\n"
        f"        {_LANDINGS[landing]}\n"
        "        return None\n"
        "sys.meta_path.insert(0, Finder())\n"
    )
    run_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]), NO_COLOR="1")
    proc = subprocess.run(
        [sys.executable, "-m", "logstream", "-b", "127.0.0.1:9", *command],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    expected = (0, "") if command[0] == "tail" else (130, "interrupted\n")
    assert (proc.returncode, proc.stderr) == expected, proc.stderr
    assert proc.stdout == ""


# Runs the CLI as the installed ``logstream`` script does (``logstream.__main__.run``, which
# ``python -m logstream`` runs too), after marking the moment ``tail`` starts reading and,
# with HANG_CLOSE, making the closing of its clients hang, as a stuck connection would.
_WITH_MARKERS = """
import os, sys, time
import logstream.cli.context as context
import logstream.cli.records as records

_print_all = records._print_all

def marked(*args, **kwargs):
    open(os.environ["MARKER"], "w").close()
    return _print_all(*args, **kwargs)

records._print_all = marked
if os.environ.get("HANG_CLOSE"):
    context.AppContext.close = lambda self: time.sleep(30)
from logstream.__main__ import run
sys.argv[0] = "logstream"
run()
"""


def _tail(broker: RunningBroker, tmp_path: Path, **extra: str) -> subprocess.Popen[str]:
    run_env = env(broker)
    run_env.update(extra, MARKER=str(tmp_path / "reading"), NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", _WITH_MARKERS, "tail", "t-int", "-f"],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not (tmp_path / "reading").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"tail never started reading: {proc.communicate()}")
        time.sleep(0.005)
    return proc


def test_repeated_ctrl_c_while_stopping_still_exits_0(broker: RunningBroker, tmp_path) -> None:
    """``timeout -s INT`` signals the command and then its process group, and people press
    Ctrl-C twice: repeats soon after the first are the same stop. Before, one landing while
    the interpreter finalized (which restores SIGINT's default action) killed ``tail -f``
    silently, exit 130: the README example's rare failure under load."""
    proc = _tail(broker, tmp_path)
    proc.send_signal(signal.SIGINT)
    storm_end = time.monotonic() + REPEAT_GRACE_S / 2
    while proc.poll() is None and time.monotonic() < storm_end:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        time.sleep(0.0005)
    _out, err = proc.communicate(timeout=20)
    assert (proc.returncode, err) == (0, ""), (proc.returncode, err)


def test_ctrl_c_again_after_the_grace_quits_a_hung_stop(broker: RunningBroker, tmp_path) -> None:
    proc = _tail(broker, tmp_path, HANG_CLOSE="1")
    proc.send_signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):  # closing hangs: the first Ctrl-C waits
        proc.wait(timeout=REPEAT_GRACE_S + 0.2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=5)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err == "interrupted again: quitting without closing\n"


# Each command that runs until stopped, with arguments that would start it.
_FOLLOWERS = {
    "tail": ["tail", "t-int", "-f"],
    "consume": ["consume", "t-int"],
    "reply": ["reply", "t-int", "--group", "g", "--", "cat"],
}


@pytest.mark.parametrize("name", sorted(_FOLLOWERS))
def test_ctrl_c_while_the_cli_itself_is_imported_stops_a_follower(tmp_path: Path, name) -> None:
    """Before LogstreamGroup.main takes over (``python -m logstream`` / the script still
    importing ``logstream.cli``), a Ctrl-C is a normal stop, exit 0, for every command the
    group stops on Ctrl-C (``stop_on_interrupt``); ``reply`` exited 130 there."""
    from logstream.cli.main import main

    assert set(_FOLLOWERS) == set(main.stop_on_interrupt)  # type: ignore[attr-defined]
    (tmp_path / "sitecustomize.py").write_text(
        "import signal, sys\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name != 'logstream.cli.lazy_group':\n"
        "            return None\n"
        "        sys.meta_path.remove(self)\n"
        "        signal.raise_signal(signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Finder())\n"
    )
    run_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]), NO_COLOR="1")
    proc = subprocess.run(
        [sys.executable, "-m", "logstream", "-b", "127.0.0.1:9", *_FOLLOWERS[name]],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert (proc.returncode, proc.stderr, proc.stdout) == (0, "", "")


def test_run_off_the_main_thread_runs_the_cli_without_its_signal_handling() -> None:
    """Embedded use: ``logstream.__main__.run`` called from another thread cannot install a
    SIGINT handler; it runs the command all the same (it raised ValueError before)."""
    script = (
        "import signal, sys, threading\n"
        "from logstream.__main__ import run\n"
        "sys.argv = ['logstream', '--version']\n"
        "codes = []\n"
        "def target():\n"
        "    try:\n"
        "        run()\n"
        "    except SystemExit as exc:\n"
        "        codes.append(exc.code)\n"
        "    except BaseException as exc:\n"
        "        codes.append(repr(exc))\n"
        "t = threading.Thread(target=target)\n"
        "t.start(); t.join(30)\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "assert sys.excepthook is sys.__excepthook__, 'hooks installed'\n"
        "print(codes)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env(), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("logstream, version") and proc.stdout.endswith("[0]\n"), proc
