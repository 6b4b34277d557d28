"""The command line's entry point: ``python -m logstream`` and the installed ``logstream``
script both run :func:`run`."""

import signal
import sys
from types import FrameType
from typing import Any


def _install_interrupt_handling() -> None:
    # Ctrl-C while the CLI is still being imported: the commands that run until stopped
    # (the group's ``stop_on_interrupt`` in cli/main.py, not imported yet) stop normally
    # (exit 0), anything else exits 130; no traceback. LogstreamGroup.main takes over once
    # imported.
    _STOP = 0 if {"tail", "consume", "reply"} & set(sys.argv[1:]) else 130

    class _EarlyStop(SystemExit):
        logstream_interrupt = True

    def _early_interrupt(signum: int, frame: object) -> None:
        # Nothing is open yet, so a repeat (logstream/interrupts.py) is ignored.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise _EarlyStop(_STOP)

    _early_interrupt.logstream_early = True  # type: ignore[attr-defined]

    # A signal handler runs wherever the interpreter happens to be, also in a weakref
    # callback or __del__ (importlib's module-lock cleanup runs one on every import), where
    # an exception is only reported ("Exception ignored in ...") and then dropped: the
    # Ctrl-C would be lost and tail -f would go on following. So such a dropped interrupt
    # (ours carry ``logstream_interrupt``) is raised again a few milliseconds later, by then
    # (almost surely; else once more) in code where it propagates. It is raised as it was,
    # not by calling the SIGINT handler, which would take it for a repeat and ignore it.
    _unraisablehook = sys.unraisablehook
    _dropped: list[BaseException] = []

    def _again(signum: int, frame: FrameType | None) -> None:
        if _dropped:
            dropped = _dropped.pop()
            raise type(dropped)(*dropped.args)

    def _redeliver(unraisable: "sys.UnraisableHookArgs") -> None:
        if not getattr(unraisable.exc_value, "logstream_interrupt", False):
            _unraisablehook(unraisable)
            return
        try:
            _dropped[:] = [unraisable.exc_value]  # type: ignore[list-item]
            signal.signal(signal.SIGALRM, _again)
            signal.setitimer(signal.ITIMER_REAL, 0.005)
        except (ValueError, OSError):  # not the main thread: report it as before
            _unraisablehook(unraisable)

    # Some C code prints an exception it then replaces (numpy's import_array prints the
    # KeyboardInterrupt and raises ImportError, which LogstreamGroup.invoke takes for the
    # Ctrl-C it is): no traceback for a Ctrl-C.
    _excepthook = sys.excepthook

    def _quiet_interrupt(*exc_info: Any) -> None:
        if not getattr(exc_info[1], "logstream_interrupt", False):
            _excepthook(*exc_info)

    try:
        signal.signal(signal.SIGINT, _early_interrupt)
    except ValueError:  # not the main thread (embedded use): leave it all as it is
        return
    sys.unraisablehook = _redeliver
    sys.excepthook = _quiet_interrupt


def run() -> None:
    """Run the command line; Ctrl-C is handled from before its modules are imported."""
    _install_interrupt_handling()
    from logstream.cli.main import main

    main()


if __name__ == "__main__":
    run()
