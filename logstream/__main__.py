"""`python -m logstream` runs the command line."""

import signal
import sys

if __name__ == "__main__":
    # Ctrl-C while the CLI is still being imported: tail and consume stop normally (exit 0),
    # anything else exits 130; no traceback. LogstreamGroup.main takes over once imported.
    _STOP = 0 if {"tail", "consume"} & set(sys.argv[1:]) else 130

    def _early_interrupt(signum: int, frame: object) -> None:
        raise SystemExit(_STOP)

    _early_interrupt.logstream_early = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, _early_interrupt)

from logstream.cli.main import main

if __name__ == "__main__":
    main()
