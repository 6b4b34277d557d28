"""The rule both the CLI and ``logstream serve`` apply to a signal repeated during a stop.

A Ctrl-C (or SIGTERM) soon after the one that started the stop is part of that stop:
``timeout -s INT`` signals the command and then its whole process group, and people press
twice. Left to Python, the repeat would cut the stop short wherever it lands. A repeat after
``REPEAT_GRACE_S`` means the stop hangs: the process quits at once, without closing.
"""

from __future__ import annotations

import os
import time

REPEAT_GRACE_S = 1.0


def quit_if_late(first_at: float, what: str, status: int) -> None:
    """Called for a repeated signal (``first_at``: ``time.monotonic()`` of the first):
    return if it is within ``REPEAT_GRACE_S``, else say ``what`` happened and exit with
    ``status`` at once (no cleanup: the clean stop is what hangs)."""
    if time.monotonic() - first_at >= REPEAT_GRACE_S:
        os.write(2, f"{what} again: quitting without closing\n".encode())
        os._exit(status)
