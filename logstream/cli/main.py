"""The ``logstream`` command: a click group; each subcommand imports its heavy parts lazily.

Every option can also come from the environment: ``LOGSTREAM_<OPTION>`` (for example
``LOGSTREAM_DATA_DIR``, ``LOGSTREAM_LISTEN``, ``LOGSTREAM_BROKER``). Exit codes: 0 success,
1 error (one line on stderr), 2 usage.
"""

from __future__ import annotations

import os

# gRPC's C core logs errors to stderr by itself (a GOAWAY, a failed bind): the CLI reports
# failures in its own one line. GRPC_VERBOSITY=debug in the environment still shows them.
# Set before anything imports grpc (the commands import it lazily).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import click

from logstream import __version__
from logstream.cli.context import DEFAULT_BROKER, app
from logstream.cli.lazy_group import LogstreamGroup
from logstream.cli.params import BROKERS
from logstream.cli.serve import serve

LAZY_COMMANDS = {
    "topic": "logstream.cli.topic:topic",
    "produce": "logstream.cli.produce:produce",
    "tail": "logstream.cli.tail:tail",
    "consume": "logstream.cli.consume:consume",
    "offsets": "logstream.cli.offsets:offsets",
    "export": "logstream.cli.export:export",
    "bench": "logstream.cli.bench:bench",
    "completion": "logstream.cli.completion:completion",
    "group": "logstream.cli.group_command:group",
    "certs": "logstream.cli.certs:certs",
    "user": "logstream.cli.users:user",
    "acl": "logstream.cli.acl:acl",
    "quota": "logstream.cli.quota:quota",
    "top": "logstream.cli.top:top",
    "queue": "logstream.cli.queue_command:queue",
    "request": "logstream.cli.request_reply:request",
    "reply": "logstream.cli.request_reply:reply",
    "verify": "logstream.cli.verify:verify",
}

EPILOG = """\b
Examples:
  logstream serve --data-dir ./data                 run a broker
  logstream topic create orders --partitions 3
  seq 100 | logstream produce orders
  logstream tail orders -f                          follow, Ctrl-C to stop
  logstream tail orders --since 3d --grep error
  logstream export orders --since 1d --to orders.parquet
  logstream group describe billing                  lag and time lag per partition
  logstream top                                     live rates and lag (serve --http-listen)
  logstream queue describe workers                  work-queue depth, in flight, oldest age
  logstream reply upper --group up -- tr a-z A-Z    answer requests with a command
  logstream request upper hello                     send a request, print the reply
  logstream verify ./data                           check every stored batch, offline
Every command has --help with examples. Docs: docs/cli.md
"""


@click.group(
    cls=LogstreamGroup,
    lazy=LAZY_COMMANDS,
    stop_on_interrupt=("tail", "consume", "reply"),
    epilog=EPILOG,
    context_settings={
        "auto_envvar_prefix": "LOGSTREAM",
        "show_default": True,
        "help_option_names": ["-h", "--help"],
    },
)
@click.version_option(__version__, prog_name="logstream")
@click.option(
    "--broker",
    "-b",
    envvar="LOGSTREAM_BROKER",
    default=DEFAULT_BROKER,
    type=BROKERS,
    metavar="HOST:PORT",
    help="Broker address (env LOGSTREAM_BROKER).",
)
@click.option(
    "--color/--no-color",
    "colour",
    default=None,
    help="Force colour on or off (default: on a TTY, unless NO_COLOR is set).",
)
@click.option("--tls", is_flag=True, envvar="LOGSTREAM_TLS", help="Connect with TLS.")
@click.option(
    "--ca",
    envvar="LOGSTREAM_CA",
    type=click.Path(exists=True, dir_okay=False),
    help="CA that signed the broker's certificate (implies --tls).",
)
@click.option(
    "--cert",
    envvar="LOGSTREAM_CERT",
    type=click.Path(exists=True, dir_okay=False),
    help="Client certificate for mutual TLS (with --key).",
)
@click.option(
    "--key",
    envvar="LOGSTREAM_KEY",
    type=click.Path(exists=True, dir_okay=False),
    help="Private key of --cert.",
)
@click.option(
    "--token",
    envvar="LOGSTREAM_TOKEN",
    show_envvar=True,
    help="API token (logstream user add); prefer the environment variable to the flag.",
)
@click.pass_context
def main(
    ctx: click.Context,
    broker: str,
    colour: bool | None,
    tls: bool,
    ca: str | None,
    cert: str | None,
    key: str | None,
    token: str | None,
) -> None:
    """logstream: a Kafka-style append-only log streaming platform and message queue."""
    obj = app(ctx)
    obj.broker = broker
    if tls or ca or cert or key or token:
        obj.security = {"tls": tls, "ca": ca, "cert": cert, "key": key, "token": token}
    if colour is not None:
        obj.colour = colour


main.add_command(serve)
