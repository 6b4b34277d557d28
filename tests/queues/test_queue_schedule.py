"""Delayed delivery and message TTL over the wire, against real broker processes: due
times held to, lateness measured, others flowing meanwhile, a kill -9 in between, expiry to
the dead-letter topic or dropped, the topic's default TTL, and plain readers."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from queue_helpers import admin

from logstream import Admin, Consumer, Producer, QueueConsumer, errors
from logstream.cli.main import main
from logstream.testing.broker import BrokerProcess
from logstream.testing.wait import wait_for


def now_ms() -> int:
    return int(time.time() * 1000)


def read_all(address: str, topic: str, want: int, *, skip_expired: bool = False) -> list:
    with Consumer(address, auto_offset_reset="earliest", skip_expired=skip_expired) as c:
        c.assign([(topic, 0)])
        got: list = []
        end = time.monotonic() + 10
        while len(got) < want and time.monotonic() < end:
            got += c.poll(0.3)
        got += c.poll(0.3)  # nothing beyond what was expected
    return got


@pytest.fixture
def default_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker with the shipped queue timer interval (50 ms), for lateness figures."""
    with BrokerProcess(tmp_path / "data") as proc:
        yield proc


def test_delayed_records_wait_until_due_arrive_within_100ms_and_do_not_hold_others(
    default_broker: BrokerProcess, name: str
) -> None:
    addr = default_broker.address
    Admin(addr).create_topic(name, partitions=1)
    admin(addr).create_queue_group(name, topics=[name])
    with Producer(addr, linger_ms=0) as p:
        for i in range(5):
            for j in range(20):
                p.send(name, f"now-{i}-{j}".encode())
            p.send(name, f"later-{i}".encode(), delay_ms=1_500 + 150 * i)
            p.flush()
    lateness: list[int] = []
    immediate = 0
    first_due = None
    with QueueConsumer(addr, group=name, max_records=100) as q:
        end = time.monotonic() + 10
        while len(lateness) < 5 and time.monotonic() < end:
            for m in q.poll(0.5):
                arrived = now_ms()
                due = int(dict(m.headers).get("logstream-deliver-at", b"0"))
                if due:
                    lateness.append(arrived - due)
                    first_due = due if first_due is None else min(first_due, due)
                else:
                    immediate += 1
                    assert not lateness, "an immediate record waited behind a delayed one"
                m.ack()
        assert q.commit() == []
    with Consumer(addr, auto_offset_reset="earliest") as c:  # plain readers see everything
        c.assign([(name, 0)])
        plain: list = []
        while len(plain) < 105 and time.monotonic() < end:
            plain += c.poll(0.3)
    assert [r.value for r in plain if "logstream-deliver-at" in dict(r.headers)] == [
        f"later-{i}".encode() for i in range(5)
    ]
    assert immediate == 100
    assert len(lateness) == 5
    assert min(lateness) >= 0, f"handed out before due: {lateness}"
    assert max(lateness) <= 100, f"handed out late (ms): {lateness}"


def test_delayed_records_survive_a_broker_kill(tmp_path: Path, name: str) -> None:
    with BrokerProcess(tmp_path / "data") as proc:
        addr = proc.address
        Admin(addr).create_topic(name, partitions=1)
        admin(addr).create_queue_group(name, topics=[name])
        with Producer(addr) as p:
            p.send(name, b"soon-0", delay_ms=6_000)
            p.send(name, b"soon-1", delay_ms=6_000)
            p.send(name, b"now")
            p.flush()
        with QueueConsumer(addr, group=name) as q:  # the delayed ones are in the window now
            got = wait_for(lambda: q.poll(0.3), timeout=10.0, what="the immediate record")
            assert [m.value for m in got] == [b"now"]
            got[0].ack()
            assert q.commit() == []
        d = admin(addr).describe_queue_group(name).total
        assert d.delayed == 2 and d.next_due_ms > now_ms()
        proc.restart(kill=True)
        addr = proc.address
        after = admin(addr).describe_queue_group(name).total
        assert after.acknowledged == 1 and after.parked == 2
        if now_ms() < d.next_due_ms:  # a restart slower than the delay leaves them due
            assert after.delayed == 2 and after.next_due_ms == d.next_due_ms
        with QueueConsumer(addr, group=name) as q:
            values: list[bytes] = []
            end = time.monotonic() + 10
            while len(values) < 2 and time.monotonic() < end:
                for m in q.poll(0.5):
                    assert now_ms() >= d.next_due_ms, "delivered before due after the restart"
                    values.append(m.value)
                    m.ack()
            assert sorted(values) == [b"soon-0", b"soon-1"]
            assert q.commit() == []


def test_expired_records_are_dead_lettered_with_reason_expired_never_delivered(
    qbroker: BrokerProcess, name: str
) -> None:
    addr = qbroker.address
    Admin(addr).create_topic(name, partitions=1)
    ga = admin(addr)
    ga.create_queue_group(name, topics=[name])
    with Producer(addr) as p:
        for i in range(3):  # due after they expire: never deliverable
            p.send(name, f"stale-{i}".encode(), ttl_ms=200, delay_ms=600)
        for i in range(3):
            p.send(name, f"fresh-{i}".encode(), ttl_ms=60_000)
        p.flush()
    seen: list[bytes] = []
    with QueueConsumer(addr, group=name) as q:
        end = time.monotonic() + 10
        while time.monotonic() < end and ga.describe_queue_group(name).total.expired < 3:
            for m in q.poll(0.2):
                seen.append(m.value)
                m.ack()
        for m in q.poll(0.8):  # past the due time too
            seen.append(m.value)
            m.ack()
        assert q.commit() == []
    assert sorted(seen) == [b"fresh-0", b"fresh-1", b"fresh-2"]
    d = ga.describe_queue_group(name).total
    assert (d.expired, d.dead_lettered, d.dropped, d.depth) == (3, 3, 0, 0)
    letters = read_all(addr, f"{name}.dlq", 3)
    assert sorted(r.value for r in letters) == [b"stale-0", b"stale-1", b"stale-2"]
    assert {dict(r.headers)["logstream.dlq.reason"] for r in letters} == {b"expired"}
    # redriven, they come back without their spent schedule: delivered, not expired again
    assert len(ga.redrive(name, execute=True)) == 3
    with QueueConsumer(addr, group=name) as q:
        back: list = []
        end = time.monotonic() + 10
        while len(back) < 3 and time.monotonic() < end:
            back += q.poll(0.3)
        assert sorted(m.value for m in back) == [b"stale-0", b"stale-1", b"stale-2"]
        assert all("logstream-expires-at" not in dict(m.headers) for m in back)
        for m in back:
            m.ack()
        assert q.commit() == []


def test_drop_mode_counts_expired_records_and_writes_no_dead_letters(
    qbroker: BrokerProcess, name: str
) -> None:
    addr = qbroker.address
    Admin(addr).create_topic(name, partitions=1)
    ga = admin(addr)
    ga.create_queue_group(name, topics=[name], expired_action="drop")
    with Producer(addr) as p:
        for i in range(4):
            p.send(name, f"stale-{i}".encode(), ttl_ms=150)
        p.flush()
    time.sleep(0.3)  # the TTL is a span of time: let it pass before the group reads them
    with QueueConsumer(addr, group=name) as q:
        assert q.poll(0.5) == []
    d = ga.describe_queue_group(name).total
    assert (d.expired, d.dropped, d.dead_lettered, d.depth) == (4, 4, 0, 0)
    with Admin(addr) as a:
        assert f"{name}.dlq" not in [t.name for t in a.list_topics()]


def test_topic_message_ttl_expires_records_without_their_own(
    qbroker: BrokerProcess, name: str
) -> None:
    addr = qbroker.address
    Admin(addr).create_topic(name, partitions=1, config={"message_ttl_ms": 200})
    ga = admin(addr)
    ga.create_queue_group(name, topics=[name], expired_action="drop")
    with Producer(addr) as p:
        p.send(name, b"default-ttl-0")
        p.send(name, b"default-ttl-1")
        p.send(name, b"own-ttl", ttl_ms=60_000)  # the header wins over the topic default
        p.flush()
    time.sleep(0.4)  # the topic TTL is a span of time: let it pass
    with QueueConsumer(addr, group=name) as q:
        got = wait_for(lambda: q.poll(0.3), timeout=10.0, what="the record with its own TTL")
        assert [m.value for m in got] == [b"own-ttl"]
        got[0].ack()
        assert q.poll(0.3) == []
        assert q.commit() == []
    d = ga.describe_queue_group(name).total
    assert (d.expired, d.dropped, d.acknowledged) == (2, 2, 1)
    with pytest.raises(errors.InvalidConfigError):
        Admin(addr).create_topic(f"{name}-bad", config={"message_ttl_ms": 0})


def test_plain_reads_skip_expired_records_on_request(qbroker: BrokerProcess, name: str) -> None:
    addr = qbroker.address
    Admin(addr).create_topic(name, partitions=1)
    with Producer(addr, linger_ms=50) as p:  # one batch mixing expired and live records
        for i in range(6):
            p.send(name, f"r{i}".encode(), ttl_ms=1 if i % 2 else 60_000)
        p.send(name, b"plain")
        p.flush()
    time.sleep(0.01)  # past the 1 ms TTL
    everything = read_all(addr, name, 7)
    assert [r.value for r in everything] == [b"r0", b"r1", b"r2", b"r3", b"r4", b"r5", b"plain"]
    assert all("logstream-expires-at" in dict(r.headers) for r in everything[:6])
    live = read_all(addr, name, 4, skip_expired=True)
    assert [r.value for r in live] == [b"r0", b"r2", b"r4", b"plain"]
    with Consumer(addr, auto_offset_reset="earliest", skip_expired=True) as c:
        c.assign([(name, 0)])
        iterated = []
        for r in c:  # iteration skips too, and moves past what it skipped
            iterated.append(r.value)
            if r.value == b"plain":
                break
        assert iterated == [b"r0", b"r2", b"r4", b"plain"]
        assert c.position((name, 0)) == 7
    args = ["tail", name, "--from", "beginning", "--skip-expired", "-o", "jsonl"]
    result = CliRunner().invoke(main, ["--broker", addr, *args])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["value"] for line in result.stdout.splitlines()] == [
        "r0",
        "r2",
        "r4",
        "plain",
    ]


def test_describe_counts_delayed_records_and_the_next_due_time(
    qbroker: BrokerProcess, name: str
) -> None:
    addr = qbroker.address
    Admin(addr).create_topic(name, partitions=1)
    ga = admin(addr)
    ga.create_queue_group(name, topics=[name])
    at = now_ms() + 60_000
    with Producer(addr) as p:
        p.send(name, b"a", deliver_at_ms=at)
        p.send(name, b"b", delay_ms=120_000)
        p.flush()
    with QueueConsumer(addr, group=name) as q:
        assert q.poll(0.3) == []
    d = ga.describe_queue_group(name).total
    assert (d.delayed, d.next_due_ms, d.available) == (2, at, 0)
    result = CliRunner().invoke(main, ["--broker", addr, "queue", "describe", name, "-o", "json"])
    total = json.loads(result.stdout)["partitions"][-1]
    assert (total["delayed"], total["next_due"]) == (2, at)
    result = CliRunner().invoke(main, ["--broker", addr, "queue", "describe", name, "-o", "table"])
    shown = re.search(r"in (\d+)s ", result.stdout)  # due in a minute, less the test's time
    assert shown is not None and 30 <= int(shown.group(1)) <= 60, result.stdout


def test_send_batch_schedules_every_record(qbroker: BrokerProcess, name: str) -> None:
    addr = qbroker.address
    Admin(addr).create_topic(name, partitions=1)
    ga = admin(addr)
    ga.create_queue_group(name, topics=[name])
    with Producer(addr) as p:
        with pytest.raises(errors.InvalidScheduleError):
            p.send_batch(name, [b"never"], delay_ms=-1)
        before = now_ms()
        p.send_batch(name, [b"d1", b"d2"], [b"k1", None], delay_ms=60_000).result(10)
        after = now_ms()
        p.send_batch(name, [b"t1", b"t2"], ttl_ms=120_000).result(10)
    with QueueConsumer(addr, group=name) as q:
        handed = wait_for(lambda: q.poll(0.3), timeout=10.0, what="the undelayed records")
        assert sorted(m.value for m in handed) == [b"t1", b"t2"]
        for m in handed:
            m.ack()
        assert q.commit() == []
        assert q.poll(0.3) == []
    d = ga.describe_queue_group(name).total
    assert d.delayed == 2
    assert before + 60_000 <= d.next_due_ms <= after + 60_000
    got = read_all(addr, name, 4)
    assert [m.value for m in got] == [b"d1", b"d2", b"t1", b"t2"]
    assert got[0].key == b"k1"
    due = {dict(m.headers)["logstream-deliver-at"] for m in got[:2]}
    assert len(due) == 1 and int(due.pop()) == d.next_due_ms  # one clock reading for all
    expires = [int(dict(m.headers)["logstream-expires-at"]) for m in got[2:]]
    assert expires[0] == expires[1] >= after + 120_000


def test_bad_schedules_are_refused_by_the_producer_and_ignored_by_the_broker(
    qbroker: BrokerProcess, name: str
) -> None:
    addr = qbroker.address
    Admin(addr).create_topic(name, partitions=1)
    ga = admin(addr)
    ga.create_queue_group(name, topics=[name])
    with Producer(addr) as p:
        for bad in (
            {"delay_ms": -1},
            {"delay_ms": 7 * 24 * 3600 * 1000 + 1},
            {"deliver_at_ms": now_ms() + 8 * 24 * 3600 * 1000},
            {"delay_ms": 5, "deliver_at_ms": now_ms()},
            {"ttl_ms": 0},
            {"delay_ms": 1.5},
        ):
            with pytest.raises(errors.InvalidScheduleError) as info:
                p.send(name, b"x", **bad)  # type: ignore[arg-type]
            assert isinstance(info.value, ValueError)
        # a producer that writes the headers itself, badly: stored, delivered now, counted
        p.send(name, b"garbage", headers={"logstream-deliver-at": b"soon"})
        p.send(name, b"too-far", headers={"logstream-deliver-at": str(now_ms() + 10**10).encode()})
        p.flush()
    with QueueConsumer(addr, group=name) as q:
        got: list = []
        end = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < end:
            got += q.poll(0.3)
        assert sorted(m.value for m in got) == [b"garbage", b"too-far"]
        for m in got:
            m.ack()
        assert q.commit() == []
    assert ga.describe_queue_group(name).invalid_schedule == 2


def anon_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon in /proc/PID/status")


def test_100k_delayed_records_keep_broker_memory_flat_and_hold_nothing_back(
    default_broker: BrokerProcess, name: str
) -> None:
    """Loose check of benchmarks/bench_delayed.py: the heap grows by about 130 bytes per
    delayed record there (13 MiB per 100,000, the same as for records consumed at once)."""
    addr = default_broker.address
    Admin(addr).create_topic(name, partitions=1)
    ga = admin(addr)
    ga.create_queue_group(name, topics=[name])
    with QueueConsumer(addr, group=name) as q:
        assert q.poll(0.2) == []
        before = anon_rss_mib(default_broker.pid)
        with Producer(addr, linger_ms=20) as p:
            for _ in range(100_000):
                p.send(name, b"x" * 100, delay_ms=3_600_000)
            p.send(name, b"behind them all")
            p.flush()
        got: list = []
        end = time.monotonic() + 60
        while not got and time.monotonic() < end:
            got = q.poll(0.5)
        assert [m.value for m in got] == [b"behind them all"]
        got[0].ack()
        assert q.commit() == []
        after = anon_rss_mib(default_broker.pid)
    d = ga.describe_queue_group(name).total
    assert (d.delayed, d.parked, d.acknowledged) == (100_000, 100_000, 1)
    assert after - before < 64, f"broker heap grew {after - before:.1f} MiB"


def test_produce_command_schedules_records(qbroker: BrokerProcess, name: str) -> None:
    addr = qbroker.address
    Admin(addr).create_topic(name, partitions=1)
    runner = CliRunner()
    args = ["--broker", addr, "produce", name, "-m", "later", "--delay-ms", "60000"]
    done = runner.invoke(main, [*args, "--ttl-ms", "120000", "-q"])
    assert done.exit_code == 0, done.output
    (record,) = read_all(addr, name, 1)
    h = dict(record.headers)
    assert int(h["logstream-expires-at"]) - int(h["logstream-deliver-at"]) in range(59_000, 61_000)
    too_long = runner.invoke(main, [*args[:-1], str(8 * 24 * 3600 * 1000)])
    assert too_long.exit_code == 2 and "--delay-ms" in too_long.output
