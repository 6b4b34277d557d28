"""The ``logstream`` click group class: lazy subcommands and the one error boundary.

Errors: a ``LogstreamError`` (or a ``FatalError`` raised by a command) prints one line
``error: ...`` on stderr and exits 1; usage errors exit 2 (click's default); Ctrl-C exits 130
(``tail -f`` and ``consume`` catch it themselves and exit 0 with a summary); a closed pipe
(``logstream tail | head``) exits 0 silently. Anything else is a bug: one line, exit 1, and
the traceback only with ``LOGSTREAM_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import IO, Any

import click

from logstream.errors import LogstreamError


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


class LogstreamGroup(click.Group):
    """A group whose subcommands are imported on first use (``lazy``: name -> "module:attr")
    and which turns errors into one line and an exit code."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None or cmd_name not in self.lazy:
            return cmd
        module, _, attr = self.lazy[cmd_name].partition(":")
        cmd = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command)
        self.add_command(cmd, cmd_name)
        return cmd

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LogstreamError as exc:
            raise FatalError(str(exc) or exc.name) from exc
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(0)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
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
            from logstream.cli.context import AppContext

            obj = ctx.find_root().obj
            if isinstance(obj, AppContext):
                obj.close()
