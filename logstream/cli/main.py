"""The ``logstream`` command: a click group; each subcommand imports its heavy parts lazily.

Every option can also come from the environment: ``LOGSTREAM_<OPTION>`` (for example
``LOGSTREAM_DATA_DIR``, ``LOGSTREAM_LISTEN``). Exit codes: 0 success, 1 error, 2 usage.
"""

from __future__ import annotations

import click

from logstream.cli.serve import serve


@click.group(context_settings={"auto_envvar_prefix": "LOGSTREAM", "show_default": True})
@click.version_option(package_name="logstream", prog_name="logstream")
def main() -> None:
    """logstream: a Kafka-style append-only log streaming platform."""


main.add_command(serve)
