"""``logstream queue ...`` and ``logstream tail --queue`` against a real broker."""

from __future__ import annotations

import json

from click.testing import CliRunner
from queue_helpers import admin, make_topic

from logstream.cli.main import main
from logstream.testing.broker import BrokerProcess


def cli(broker: BrokerProcess, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--broker", broker.address, *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_queue_commands_end_to_end(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 2, 10)
    code, out, _ = cli(
        qbroker, "queue", "create", name, "-t", name, "--max-deliveries", "2", "-o", "json"
    )
    assert code == 0
    assert {r["setting"]: r["value"] for r in json.loads(out)}["max_deliveries"] == 2
    code, out, _ = cli(qbroker, "queue", "list", "-o", "json")
    assert code == 0 and any(g["group"] == name and g["depth"] == 10 for g in json.loads(out))
    code, out, _ = cli(qbroker, "queue", "peek", name, "-n", "3", "-o", "json")
    assert code == 0 and len(json.loads(out)) == 3
    code, out, _ = cli(qbroker, "queue", "configure", name, "--lease-ms", "5000", "-o", "json")
    assert code == 0
    assert {r["setting"]: r["value"] for r in json.loads(out)}["lease_ms"] == 5000
    # without --ack: acquired, printed, released (still 10 to do)
    code, out, _ = cli(qbroker, "tail", "--queue", name, "-n", "4", "-o", "jsonl")
    assert code == 0 and len(out.splitlines()) == 4
    peeked = admin(qbroker.address).peek(name, 10)
    assert len(peeked) == 10 and sorted(m.delivery_count for m in peeked) == [0] * 6 + [1] * 4
    code, out, _ = cli(qbroker, "queue", "describe", name, "-o", "json")
    body = json.loads(out)
    total = body["partitions"][-1]
    assert total["partition"] == "total" and total["depth"] == 10 and total["redelivered"] == 0
    code, out, _ = cli(qbroker, "tail", "--queue", name, "--ack", "-n", "10", "-o", "jsonl")
    assert code == 0 and len(out.splitlines()) == 10
    code, out, _ = cli(qbroker, "queue", "describe", name, "-o", "json")
    total = json.loads(out)["partitions"][-1]
    assert total["depth"] == 0 and total["acked"] == 10
    code, out, err = cli(qbroker, "queue", "redrive", name)
    assert code == 0 and "dry run: 0 records" in err
    code, out, _ = cli(qbroker, "queue", "delete", name)
    assert code == 0
    code, out, err = cli(qbroker, "queue", "describe", name)
    assert code == 1 and "no queue group" in err and len(err.strip().splitlines()) == 1
