"""The object every command receives (``ctx.obj``): where the broker is, the clock, and
factories for clients and record sources. Tests pass their own (``CliRunner.invoke(...,
obj=AppContext(...))``) to run commands against an in-memory source or a fixed clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from logstream.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from logstream.replay.source import RecordSource

DEFAULT_BROKER = "127.0.0.1:7070"


@dataclass
class AppContext:
    broker: str = DEFAULT_BROKER
    clock: Clock = SYSTEM_CLOCK
    colour: bool | None = None  # None: decide per stream (TTY, NO_COLOR)
    utc: bool = False
    source_factory: Callable[[AppContext, Path | None], RecordSource] | None = None
    admin_factory: Callable[[AppContext], Any] | None = None
    security: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of every client: tls, ca, cert, key, token (docs/security.md)."""
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def tz(self) -> dt.tzinfo | None:
        return dt.UTC if self.utc else None

    def admin(self) -> Any:
        """An ``Admin`` client (closed when the command ends)."""
        if self.admin_factory is not None:
            return self.admin_factory(self)
        from logstream.client import Admin

        admin = Admin(self.broker, **self.security)
        self._closers.append(admin.close)
        return admin

    def producer(self, **options: Any) -> Any:
        from logstream.client import Producer

        return Producer(self.broker, **self.security, **options)

    def source(self, data_dir: Path | None = None) -> RecordSource:
        """Records from the broker, or straight from segment files with ``data_dir``."""
        if self.source_factory is not None:
            return self.source_factory(self, data_dir)
        from logstream.replay import sources

        src: RecordSource
        if data_dir is not None:
            src = sources.DataDirSource(data_dir)
        else:
            src = sources.BrokerSource(self.broker, admin=self.admin(), security=self.security)
        self._closers.append(src.close)
        return src

    def close_later(self, close: Callable[[], None]) -> None:
        """Call ``close`` when the command ends (in reverse order of registration)."""
        self._closers.append(close)

    def close(self) -> None:
        """Close every client (idempotent). A Ctrl-C while closing one does not leave the
        others open; it is raised again once all are closed."""
        interrupted = False
        while self._closers:
            fn = self._closers.pop()
            try:
                fn()
            except KeyboardInterrupt:
                interrupted = True
            except Exception:  # closing is best effort; the command's result stands
                pass
        if interrupted:
            raise KeyboardInterrupt


def app(ctx: click.Context | None = None) -> AppContext:
    """The AppContext of the current command (created on first use)."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj
