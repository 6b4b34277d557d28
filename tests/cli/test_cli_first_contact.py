"""What a new user trips over when following the README and docs: each test runs the real
``logstream`` command as a subprocess against a real broker (a free 127.0.0.1 port)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from logstream.testing.broker import RunningBroker, run_broker

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with run_broker(tmp_path_factory.mktemp("data")) as b:
        yield b


def logstream(
    broker: RunningBroker | None,
    *args: str,
    cwd: Path | None = None,
    umask: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env["LOGSTREAM_BROKER"] = broker.address if broker else "127.0.0.1:1"
    return subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def ok(broker: RunningBroker | None, *args: str, **kw: object) -> str:
    p = logstream(broker, *args, **kw)  # type: ignore[arg-type]
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_export_file_gets_the_umask_mode_like_a_shell_redirect(
    broker: RunningBroker, tmp_path: Path, suffix: str
) -> None:
    # mkstemp made the temporary file 0600 and the rename kept it: an export meant for a
    # colleague or a notebook server was readable by its owner only.
    ok(broker, "topic", "create", "fc-export", "--if-not-exists")
    ok(broker, "produce", "fc-export", "-m", "one", "-q")
    target = tmp_path / f"out.{suffix}"
    ok(broker, "export", "fc-export", "--to", str(target), umask=0o022)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    target.unlink()
    ok(broker, "export", "fc-export", "--to", str(target), umask=0o077)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.partial"))


def test_top_without_a_listener_is_one_error_line_like_every_command() -> None:
    # It printed click's "Error: ..." where every other command prints "error: ..." (what
    # docs/cli.md promises and what a script greps for).
    p = logstream(None, "top", "--once", "--http", "127.0.0.1:1", "--interval", "0.1")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("error: cannot read http://127.0.0.1:1/metrics"), p.stderr
    assert p.stderr.count("\n") == 1


def test_quota_shows_the_rate_as_given_not_in_exponent_form(tmp_path: Path) -> None:
    # docs/security.md's own example, 1048576 B/s, was shown as "1.04858e+06 B/s" (digits
    # lost), and a rate not set as "unlimited B/s".
    data = str(tmp_path / "data")
    out = ok(None, "quota", "set", "alice", "--produce-bytes-per-s", "1048576", "--data-dir", data)
    assert out == "alice\tproduce 1048576 B/s\tfetch unlimited\trequests unlimited\n"
    ok(None, "quota", "set", "bob", "--requests-per-s", "0.5", "--data-dir", data)
    listed = ok(None, "quota", "list", "--data-dir", data).splitlines()
    assert listed == [
        "alice\tproduce 1048576 B/s\tfetch unlimited\trequests unlimited",
        "bob\tproduce unlimited\tfetch unlimited\trequests 0.5/s",
    ]


def test_queue_create_and_configure_name_the_dead_letter_topic(broker: RunningBroker) -> None:
    # They printed an empty dead_letter_topic for the default, while describe said
    # "dead letters to G.dlq": a new user could not tell where dead letters go.
    ok(broker, "topic", "create", "fc-videos", "--if-not-exists")
    out = ok(broker, "queue", "create", "fc-workers", "--topic", "fc-videos", "-o", "plain")
    assert "dead_letter_topic\tfc-workers.dlq\n" in out
    out = ok(broker, "queue", "configure", "fc-workers", "--lease-ms", "60000", "-o", "plain")
    assert "dead_letter_topic\tfc-workers.dlq\n" in out and "lease_ms\t60000\n" in out
    out = ok(broker, "queue", "configure", "fc-workers", "--dead-letter-topic", "fc-dead")
    assert "dead_letter_topic\tfc-dead\n" in out


def test_group_reset_to_time_takes_the_at_form_of_tail(broker: RunningBroker) -> None:
    # tail/consume write times as --from @-1h and offsets --at takes an optional @, but
    # group reset --to-time @-1h was a usage error ("bad time '@-1h'").
    ok(broker, "topic", "create", "fc-reset", "--if-not-exists")
    ok(broker, "produce", "fc-reset", "-m", "a", "-m", "b", "-q")
    ok(broker, "consume", "fc-reset", "--group", "fc-g", "--from", "beginning", "-e")
    for when in ("@-1h", "-1h"):
        p = logstream(broker, "group", "reset", "fc-g", "--topic", "fc-reset", "--to-time", when)
        assert p.returncode == 0, p.stderr
        assert p.stdout == "fc-reset\t0\t2\t0\n"  # current 2, new 0: the plan of a dry run


def test_a_queue_no_worker_ever_read_shows_the_age_of_its_oldest_job(
    broker: RunningBroker,
) -> None:
    # Jobs produced while no worker runs stay "unread" (not yet in the group's window): the
    # depth counted them, but the oldest age, "the figure to alert on", read "-" (-1, and
    # 0 in /metrics), so an alert on it never fired when every worker was down.
    import json
    import time

    ok(broker, "topic", "create", "fc-idle", "--partitions", "2", "--if-not-exists")
    ok(broker, "queue", "create", "fc-idle-w", "--topic", "fc-idle")
    ok(broker, "produce", "fc-idle", "-m", "job", "-p", "1", "-q")
    produced_ms = time.time() * 1000
    deadline = time.monotonic() + 10
    while True:  # until the job is older than 300 ms (the age is measured, not slept for)
        d = json.loads(ok(broker, "queue", "describe", "fc-idle-w", "-o", "json"))
        p1 = d["partitions"][1]
        age = p1["oldest"]
        assert p1["depth"] == 1 and age >= 0, d
        assert age <= time.time() * 1000 - produced_ms + 1000
        if age >= 300 or time.monotonic() > deadline:
            break
    assert age >= 300, d
    assert d["partitions"][0]["oldest"] == -1  # an empty partition has none
    assert d["partitions"][2]["oldest"] == age  # the total: the oldest of the partitions
    listed = json.loads(ok(broker, "queue", "list", "-o", "json"))
    assert next(g["oldest"] for g in listed if g["group"] == "fc-idle-w") >= age


def test_certs_dev_keeps_an_existing_set_unless_forced(tmp_path: Path) -> None:
    # Running docs/security.md's "try it" again replaced the CA silently: the running
    # broker's certificate and the clients' ca.pem no longer matched
    # (CERTIFICATE_VERIFY_FAILED on every command).
    tls = tmp_path / "tls"
    ok(None, "certs", "dev", str(tls))
    ca = (tls / "ca.pem").read_bytes()
    p = logstream(None, "certs", "dev", str(tls))
    assert p.returncode == 1 and p.stdout == ""
    assert (
        p.stderr == f"error: {tls / 'ca.pem'} exists (a broker or a client may use it); "
        "add --force to replace the whole set\n"
    )
    assert (tls / "ca.pem").read_bytes() == ca
    ok(None, "certs", "dev", str(tls), "--force")
    assert (tls / "ca.pem").read_bytes() != ca


def test_queue_peek_json_has_null_keys_and_the_jsonl_byte_rules(broker: RunningBroker) -> None:
    # -o json printed the table's placeholder: a record without a key had "key": "-",
    # the same as a record whose key is the text "-".
    import json

    ok(broker, "topic", "create", "fc-peek", "--if-not-exists")
    ok(broker, "queue", "create", "fc-peek-w", "--topic", "fc-peek")
    ok(broker, "produce", "fc-peek", "-m", "no key", "-q")
    ok(broker, "produce", "fc-peek", "-m", "dash key", "-k", "-", "-q")
    rows = json.loads(ok(broker, "queue", "peek", "fc-peek-w", "-o", "json"))
    assert [(r["key"], r["value"]) for r in rows] == [(None, "no key"), ("-", "dash key")]
    plain = ok(broker, "queue", "peek", "fc-peek-w", "-o", "plain").splitlines()
    assert plain == ["fc-peek\t0\t0\t-\tno key", "fc-peek\t0\t1\t-\tdash key"]


def test_group_describe_json_has_null_for_a_partition_without_member(
    broker: RunningBroker,
) -> None:
    # -o json said "member": "-" for a partition no member holds (the table's placeholder).
    import json

    ok(broker, "topic", "create", "fc-gd", "--if-not-exists")
    ok(broker, "produce", "fc-gd", "-m", "a", "-q")
    ok(broker, "consume", "fc-gd", "--group", "fc-gd-g", "--from", "beginning", "-e")
    (row,) = json.loads(ok(broker, "group", "describe", "fc-gd-g", "-o", "json"))
    assert row["member"] is None and row["committed"] == 1 and row["lag"] == 0
    assert ok(broker, "group", "describe", "fc-gd-g", "-o", "plain") == "fc-gd\t0\t-\t1\t1\t0\t-1\n"


def test_a_queue_group_whose_dead_letters_cannot_be_written_is_refused(
    broker: RunningBroker,
) -> None:
    # "x y" was accepted; its dead-letter topic "x y.dlq" is not a valid topic name, so each
    # reject, and each close after one, failed with INVALID_TOPIC_EXCEPTION (the broker
    # logging a traceback each time).
    ok(broker, "topic", "create", "fc-dlq", "--if-not-exists")
    p = logstream(broker, "queue", "create", "x y", "--topic", "fc-dlq")
    assert p.returncode == 1, p.stdout
    assert p.stderr.startswith("error: queue group 'x y': dead letters would go to 'x y.dlq'")
    assert "rename the group or set dead_letter_topic" in p.stderr and p.stderr.count("\n") == 1
    assert "x y" not in ok(broker, "queue", "list")
    ok(broker, "queue", "create", "fc-dlq-w", "--topic", "fc-dlq")
    p = logstream(broker, "queue", "configure", "fc-dlq-w", "--dead-letter-topic", "bad name")
    assert p.returncode == 1
    assert p.stderr.startswith("error: dead_letter_topic: dead letters would go to 'bad name'")
    assert "dead_letter_topic\tfc-dlq-w.dlq\n" in ok(
        broker, "queue", "configure", "fc-dlq-w", "--lease-ms", "5000", "-o", "plain"
    )


def test_tail_queue_without_ack_says_on_a_terminal_that_it_cost_a_delivery(
    broker: RunningBroker,
) -> None:
    # Looking at a queue with tail --queue G (no --ack) raised every printed record's
    # delivery count, silently: two looks at a max_deliveries=2 group dead-lettered it all.
    import pexpect

    ok(broker, "topic", "create", "fc-look", "--if-not-exists")
    ok(broker, "queue", "create", "fc-look-w", "--topic", "fc-look", "--max-deliveries", "2")
    ok(broker, "produce", "fc-look", "-m", "job-1", "-m", "job-2", "-q")
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env["LOGSTREAM_BROKER"] = broker.address
    child = pexpect.spawn(
        sys.executable,
        ["-m", "logstream", "tail", "--queue", "fc-look-w"],
        env=env,
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 300),
    )
    try:
        child.expect("job-2")
        child.expect(r"released 2 records to the group; each counts a delivery")
        child.expect(r"use logstream queue peek fc-look-w")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    # piped (a script), records only: the note is for people
    p = logstream(broker, "tail", "--queue", "fc-look-w")
    assert p.returncode == 0 and p.stdout.splitlines()[-1].endswith("job-2") and p.stderr == ""


def test_every_option_reads_logstream_command_option_as_typed(broker: RunningBroker) -> None:
    # docs/cli.md: every option can come from LOGSTREAM_<COMMAND>_<OPTION>. Options stored
    # under another Python name were silently ignored: LOGSTREAM_CONSUME_FROM (start),
    # LOGSTREAM_TAIL_LINES (last), LOGSTREAM_TOPIC_ADD_PARTITIONS_COUNT worked, these not.
    ok(broker, "topic", "create", "fc-env", "--if-not-exists")
    ok(broker, "produce", "fc-env", "-m", "a", "-m", "b", "-m", "c", "-q")
    env = {"LOGSTREAM_CONSUME_FROM": "beginning"}
    assert ok(broker, "consume", "fc-env", "-e", extra_env=env) == "a\nb\nc\n"
    env = {"LOGSTREAM_TAIL_LINES": "1", "LOGSTREAM_TAIL_FORMAT": "{offset}={value}"}
    assert ok(broker, "tail", "fc-env", extra_env=env) == "2=c\n"
    env = {"LOGSTREAM_TAIL_START": "1", "LOGSTREAM_TAIL_COUNT": "1"}  # START: the Python name
    assert ok(broker, "tail", "fc-env", "--format", "{value}", extra_env=env) == "b\n"
    p = logstream(broker, "tail", "fc-env", extra_env={"LOGSTREAM_TAIL_LINES": "x"})
    assert p.returncode == 2 and "'x' is not a valid integer" in p.stderr


def test_a_command_without_a_token_says_how_the_cli_sends_one(tmp_path: Path) -> None:
    # "error: no credentials: send a valid token (authorization: Bearer ...)" told a CLI
    # user about an HTTP header, not about LOGSTREAM_TOKEN / --token.
    from logstream.broker.security.credentials import CredentialStore

    data = tmp_path / "data"
    token = CredentialStore(data).add("admin")
    with run_broker(data, auth=True) as b:
        p = logstream(b, "topic", "list")
        assert p.returncode == 1 and p.stderr.startswith("error: no credentials")
        assert p.stderr.rstrip().endswith("the CLI sends the token in LOGSTREAM_TOKEN (or --token)")
        assert p.stderr.count("\n") == 1
        assert logstream(b, "topic", "list", extra_env={"LOGSTREAM_TOKEN": token}).returncode == 0
        p = logstream(b, "topic", "list", extra_env={"LOGSTREAM_TOKEN": "ls1.admin.wrong"})
        assert p.returncode == 1 and "LOGSTREAM_TOKEN" not in p.stderr  # it was sent


def test_a_key_given_as_the_ca_is_named_not_a_failed_handshaker(tmp_path: Path) -> None:
    # --ca tls/server.key (the wrong file of the set) failed with gRPC's "Failed to create
    # security handshaker", which names neither the option nor the file.
    from logstream.cli.certs import make_dev_certs

    tls = make_dev_certs(tmp_path / "tls")
    with run_broker(tmp_path / "data", tls_cert=tls["server"], tls_key=tls["server_key"]) as b:
        p = logstream(b, "--ca", str(tls["server_key"]), "topic", "list")
        assert p.returncode == 1
        assert p.stderr == (
            f"error: CA file {tls['server_key']} has no PEM line '-----BEGIN CERTIFICATE-----'\n"
        )
        p = logstream(b, "--ca", str(tls["ca"]), "--cert", str(tls["client"]),
                      "--key", str(tls["client"]), "topic", "list")  # fmt: skip
        assert p.returncode == 1 and "client key" in p.stderr and "PRIVATE KEY-----" in p.stderr
        assert logstream(b, "--ca", str(tls["ca"]), "topic", "list").returncode == 0


def test_tail_of_nothing_says_so_on_a_terminal_and_stays_silent_in_a_pipe(
    broker: RunningBroker,
) -> None:
    import pexpect

    ok(broker, "topic", "create", "fc-empty", "--if-not-exists")
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env["LOGSTREAM_BROKER"] = broker.address
    for args, expected in (
        (["fc-empty"], r"no records to show \(-f waits for new ones\)"),
        (["fc-empty", "--grep", "nothing-like-this"], None),
    ):
        if expected is None:  # a filter that matches nothing, over records that exist
            ok(broker, "produce", "fc-empty", "-m", "a", "-m", "b", "-q")
            expected = r"no records to show \(none of the 2 read matched\)"
        child = pexpect.spawn(
            sys.executable,
            ["-m", "logstream", "tail", *args],
            env=env,
            encoding="utf-8",
            timeout=20,
            dimensions=(40, 200),
        )
        try:
            child.expect(expected)
            child.expect(pexpect.EOF)
        finally:
            child.close()
        assert child.exitstatus == 0
    p = logstream(broker, "tail", "fc-empty", "--grep", "nothing-like-this")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
