"""``logstream request`` and ``logstream reply``: try a request/reply service from a terminal
(docs/cli.md, docs/queues.md Request / reply).

``request`` sends one request and prints the reply's value; no reply within ``--timeout``
is one line on stderr and exit 1. ``reply`` joins a queue group and answers every request
by running a command with the request's value on stdin and replying with its stdout (like
``nats reply --command``); a command that fails (non-zero exit, or over ``--command-timeout``)
gets the request rejected and no reply (the requester times out). Ctrl-C stops ``reply``
with exit 0.
"""

from __future__ import annotations

import subprocess
import sys

import click

from logstream.cli import params
from logstream.cli.context import app
from logstream.cli.lazy_group import FatalError
from logstream.errors import RequestTimeoutError

REQUEST_EPILOG = """\b
Examples:
  logstream request prices '{"sku": 42}'
  echo '{"sku": 42}' | logstream request prices - --timeout 0.5
  logstream request prices '{"sku": 42}' --header tenant=acme
"""

REPLY_EPILOG = """\b
Examples:
  logstream reply prices --group pricing -- ./price.sh
  logstream reply upper --group upper --count 1 -- tr a-z A-Z
"""


@click.command(epilog=REQUEST_EPILOG)
@click.argument("topic")
@click.argument("value", required=False, default="-")
@click.option(
    "--timeout",
    "-t",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    help="Seconds to wait for the reply.",
)
@click.option("--key", "-k", default=None, help="The request's key.")
@params.header_option("A header on the request (repeatable).")
def request(
    topic: str,
    value: str,
    timeout: float,
    key: str | None,
    headers: tuple[tuple[str, str], ...],
) -> None:
    """Send VALUE (or stdin, for - or no VALUE) as a request to TOPIC and print the reply."""
    if value == "-":
        payload = sys.stdin.buffer.read()
        if payload.endswith(b"\n"):
            payload = payload[:-1]
    else:
        payload = value.encode("utf-8")
    from logstream.client import Requester

    ctx = app()
    requester = Requester(ctx.broker, **ctx.security)
    ctx.close_later(requester.close)
    try:
        reply = requester.request(
            topic,
            payload,
            key=key.encode("utf-8") if key is not None else None,
            headers=[(k, v.encode("utf-8")) for k, v in headers],
            timeout=timeout,
        )
    except RequestTimeoutError:
        raise FatalError(
            f"no reply from {topic} within {timeout:g} s (is a responder running?)"
        ) from None
    out = reply.value or b""
    sys.stdout.buffer.write(out if out.endswith(b"\n") else out + b"\n")
    sys.stdout.flush()


@click.command(epilog=REPLY_EPILOG)
@click.argument("topic")
@click.argument("command", nargs=-1, required=True)
@click.option("--group", "-g", required=True, metavar="G", help="The queue group to join.")
@click.option(
    "--count",
    "-c",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after answering this many requests.",
)
@click.option(
    "--command-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    help="Seconds one run of COMMAND may take before it is killed.",
)
@click.option("-v", "--verbose", is_flag=True, help="One line per request on stderr.")
def reply(
    topic: str,
    command: tuple[str, ...],
    group: str,
    count: int | None,
    command_timeout: float,
    verbose: bool,
) -> None:
    """Answer requests on TOPIC: run COMMAND per request (value on stdin), reply its stdout."""
    from logstream.client import QueueConsumer
    from logstream.client.transport import ChannelSecurity, Transport

    ctx = app()
    transport = Transport(ctx.broker, security=ChannelSecurity.of(**ctx.security))
    ctx.close_later(transport.close)
    consumer = QueueConsumer(transport, group=group, topics=[topic], max_wait_ms=500)

    def close_consumer() -> None:
        consumer.close()

    ctx.close_later(close_consumer)
    answered = 0
    while count is None or answered < count:
        for msg in consumer.poll(0.5, max_records=1):
            where = f"{msg.topic}-{msg.partition}@{msg.offset}"
            try:
                done = subprocess.run(
                    command,
                    input=msg.value or b"",
                    capture_output=True,
                    timeout=command_timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                msg.reject(reason=f"command took over {command_timeout:g} s")
                click.echo(f"{where}: command took over {command_timeout:g} s", err=True)
                continue
            except OSError as exc:
                raise FatalError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
            if done.returncode != 0:
                msg.reject(reason=f"command exited {done.returncode}")
                click.echo(f"{where}: command exited {done.returncode}", err=True)
                continue
            msg.reply(done.stdout)
            msg.ack()
            answered += 1
            if verbose:
                click.echo(f"{where}: replied {len(done.stdout)} bytes", err=True)
