"""The ``logstream`` click group class: lazy subcommands and the one error boundary.

Errors: a ``LogstreamError`` (or a ``FatalError`` raised by a command) prints one line
``error: ...`` on stderr and exits 1; usage errors exit 2 (click's default); Ctrl-C exits 130
(for ``tail`` and ``consume``, the commands that run until stopped, Ctrl-C is the
normal way to stop: exit 0 at any moment, with the summary once reading started, quietly
while still starting up or closing; a second Ctrl-C within ``REPEAT_GRACE_S``
(``logstream/interrupts.py``) belongs to the same stop, a later one quits at once with
130); a closed pipe
(``logstream tail | head``) exits 0 silently. Anything else is a bug: one line, exit 1, and
the traceback only with ``LOGSTREAM_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time
from typing import IO, Any

import click

from logstream.errors import AuthenticationFailedError, LogstreamError
from logstream.interrupts import quit_if_late


class FatalError(click.ClickException):
    """A failure worth one line on stderr and exit code 1 (not a usage error)."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file or sys.stderr)


def fail(message: str) -> FatalError:
    return FatalError(message)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, as raised by ``interrupt_handler``: a KeyboardInterrupt, but not exactly one.

    CPython (3.11, 3.12) marks the process for death by SIGINT whenever code run by a string
    ``exec``/``eval`` ends with *exactly* ``KeyboardInterrupt``, even if a caller catches
    it: ``run_eval_code_obj`` in Python/pythonrun.c sets
    ``_PyRuntime.signals.unhandled_keyboard_interrupt``, and under ``python -m`` ``Py_RunMain``
    checks that flag after the interpreter exits and re-kills itself with SIGINT (no output,
    status -2), whatever exit code we chose. ``dataclasses`` (``exec``) and ``namedtuple``
    (``eval``) run such strings at import time, so a Ctrl-C while a subcommand's modules
    are imported would end ``tail``/``consume`` by the signal instead of exit 0. The flag
    test is ``type is KeyboardInterrupt``; a subclass is caught by every ``except
    KeyboardInterrupt`` but never sets it. (``logstream_interrupt``: see ``__main__``, which
    delivers one again if it was raised where Python drops exceptions, e.g. a weakref callback.)
    """

    logstream_interrupt = True


_ctrl_c: dict[str, float | None] = {"first": None}


def interrupt_handler(signum: int, frame: object) -> None:
    """SIGINT handler of the CLI: raises ``Interrupted`` on the first Ctrl-C, ignores repeats
    within ``REPEAT_GRACE_S``, and quits at once (130) on a later one, when stopping hangs."""
    now = time.monotonic()
    first = _ctrl_c["first"]
    if first is None:
        _ctrl_c["first"] = now
        raise Interrupted
    quit_if_late(first, "interrupted", 130)


def _ctrl_c_turned_into(exc: BaseException) -> bool:
    """True if ``exc`` is (probably) a Ctrl-C that a library turned into another error: some C
    code prints the KeyboardInterrupt and raises its own (numpy's ``import_array`` makes it
    ``ImportError: numpy._core.multiarray failed to import``). Once Ctrl-C was pressed, any
    error but an exit is taken for one; it stops the command all the same."""
    return _ctrl_c["first"] is not None and not isinstance(exc, click.exceptions.Exit)


class LogstreamGroup(click.Group):
    """A group whose subcommands are imported on first use (``lazy``: name -> "module:attr")
    and which turns errors into one line and an exit code."""

    def __init__(
        self,
        *args: Any,
        lazy: dict[str, str] | None = None,
        stop_on_interrupt: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})
        self.stop_on_interrupt = frozenset(stop_on_interrupt)

    def _interrupt_exit(self, ctx: click.Context, name: str | None) -> None:
        if name in self.stop_on_interrupt:
            ctx.exit(0)
        click.echo("interrupted", err=True)
        ctx.exit(130)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # From here on Ctrl-C is a KeyboardInterrupt that invoke() turns into an exit code
        # (``python -m logstream`` ignored it with a quiet exit while importing).
        ours = getattr(signal.getsignal(signal.SIGINT), "logstream_early", False)
        if ours:
            try:
                signal.signal(signal.SIGINT, interrupt_handler)
            except ValueError:  # not the main thread (embedded use): leave it as it is
                ours = False
        try:
            return super().main(*args, **kwargs)
        finally:
            # The command has ended and closed its clients: a Ctrl-C now (a repeat) must not
            # turn its exit code into a death by SIGINT, which is what the default action the
            # interpreter restores while finalizing would do.
            if ours:
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _subcommand(self, args: list[str]) -> str | None:
        names = set(self.lazy) | set(self.commands)
        return next((a for a in args if a in names), None)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        name = self._subcommand(args)
        # Ctrl-C while parsing: click itself would print "Aborted!" and exit 1.
        try:
            ctx = super().make_context(info_name, list(args), parent=parent, **extra)
        except (KeyboardInterrupt, Exception) as exc:
            if not isinstance(exc, KeyboardInterrupt) and not _ctrl_c_turned_into(exc):
                raise
            raise click.exceptions.Exit(0 if name in self.stop_on_interrupt else 130) from None
        ctx.meta["logstream.subcommand"] = name
        return ctx

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None or cmd_name not in self.lazy:
            return cmd
        module, _, attr = self.lazy[cmd_name].partition(":")
        cmd = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command)
        name_envvars_after_options(cmd, f"LOGSTREAM_{cmd_name.upper().replace('-', '_')}")
        self.add_command(cmd, cmd_name)
        return cmd

    def invoke(self, ctx: click.Context) -> Any:
        name = ctx.meta.get("logstream.subcommand")
        try:
            return self._invoke(ctx)
        except (KeyboardInterrupt, Exception) as exc:
            # Anywhere, also while closing the clients after an error or a first Ctrl-C.
            if not isinstance(exc, KeyboardInterrupt) and not _ctrl_c_turned_into(exc):
                raise
            try:
                _close(ctx)
            except (KeyboardInterrupt, Exception):
                pass
            self._interrupt_exit(ctx, name)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LogstreamError as exc:
            message = str(exc) or exc.name
            if isinstance(exc, AuthenticationFailedError) and message.startswith("no credentials"):
                # the broker's words are for any client; say how this one sends a token
                message += "; the CLI sends the token in LOGSTREAM_TOKEN (or --token)"
            raise FatalError(message) from exc
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(0)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("LOGSTREAM_DEBUG"):
                raise
            raise FatalError(
                f"internal error: {type(exc).__name__}: {exc} (LOGSTREAM_DEBUG=1 shows the "
                "traceback)"
            ) from exc
        finally:
            _close(ctx)


def name_envvars_after_options(cmd: click.Command, prefix: str) -> None:
    """Let ``LOGSTREAM_<COMMAND>_<OPTION>`` name the option as it is typed, as docs/cli.md
    says: click's ``auto_envvar_prefix`` uses the parameter's Python name, so an option
    stored under another name (``--from`` as ``start``, ``-n/--lines`` as ``last``) read
    only ``LOGSTREAM_TAIL_START`` and ``LOGSTREAM_TAIL_FROM`` was silently ignored. The
    Python name keeps working (click falls back to it)."""
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.envvar or not p.allow_from_autoenv:
            continue
        typed = next((o[2:] for o in p.opts if o.startswith("--")), None)
        if typed and p.name and typed.replace("-", "_").upper() != p.name.upper():
            p.envvar = f"{prefix}_{typed.replace('-', '_').upper()}"
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            name_envvars_after_options(sub, f"{prefix}_{name.upper().replace('-', '_')}")


def _close(ctx: click.Context) -> None:
    from logstream.cli.context import AppContext

    obj = ctx.find_root().obj
    if isinstance(obj, AppContext):
        obj.close()
