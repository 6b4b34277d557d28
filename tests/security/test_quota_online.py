"""``logstream quota set | get | list --online`` (the Security service's SetQuota and
ListQuotas) against a running broker process: applied at once, kept in the quota file,
refused to a principal without cluster alter."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from logstream.broker.security.credentials import CredentialStore
from logstream.broker.security.quotas import Quota, QuotaFile
from logstream.cli.main import main
from logstream.client import AclBinding, Admin
from logstream.codec import encode_batch
from logstream.errors import ClusterAuthorizationFailedError, InvalidRequestError
from logstream.protocol import log_pb2, log_pb2_grpc
from logstream.testing.broker import BrokerProcess

QUOTA = 100_000  # bytes/s


def _throttle_after_a_burst(address: str, token: str) -> int:
    """The throttle_time_ms of the answer to 300 kB produced at once by ``token``."""
    channel = grpc.insecure_channel(address)
    try:
        request = log_pb2.ProduceRequest(
            partitions=[
                log_pb2.PartitionProduceData(
                    topic="metered", partition=0, batches=[encode_batch([b"x" * 100_000] * 3)]
                )
            ]
        )
        md = (("authorization", f"Bearer {token}"),)
        response = log_pb2_grpc.LogStub(channel).Produce(request, metadata=md, timeout=30)
        assert response.partitions[0].results[0].error_code == 0, response
        return int(response.throttle_time_ms)
    finally:
        channel.close()


def test_online_quota_applies_at_once_and_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = CredentialStore(data)
    admin, alice, mallory = store.add("admin"), store.add("alice"), store.add("mallory")
    run = CliRunner().invoke
    with BrokerProcess(data, auth=True, acls=True, super_users="admin") as broker:
        base = ["-b", broker.address, "--token", admin, "quota"]
        client = Admin(broker.address, token=admin)
        client.create_topic("metered")
        client.create_acls([AclBinding("alice", "topic", "metered", "literal", "write", "allow")])
        assert _throttle_after_a_burst(broker.address, alice) == 0  # no quota yet

        set_ = run(main, [*base, "set", "alice", "--produce-bytes-per-s", str(QUOTA), "--online"])
        assert set_.exit_code == 0, set_.output
        assert set_.output.startswith("alice\tproduce 100000 B/s\tfetch unlimited")
        # no SIGHUP: the next burst is throttled (300 kB at 100 kB/s: ~2.9 s)
        assert 2_000 <= _throttle_after_a_burst(broker.address, alice) <= 3_500
        assert QuotaFile(data).read() == {"alice": Quota(produce_bytes_per_s=QUOTA)}

        got = run(main, [*base, "get", "alice", "--online"])
        assert got.output.startswith("alice\tproduce 100000 B/s"), got.output
        limits = client.set_quota("*", requests_per_s=500)
        assert (limits.principal, limits.requests_per_s) == ("*", 500)
        listed = run(main, [*base, "list", "--online"]).output.splitlines()
        assert [line.split("\t")[0] for line in listed] == ["*", "alice"]

        refused = run(
            main,
            ["-b", broker.address, "--token", mallory, "quota", "set", "mallory",
             "--produce-bytes-per-s", "0", "--online"],
        )  # fmt: skip
        assert refused.exit_code == 1
        assert refused.output == "error: not authorized to alter the cluster\n"
        with pytest.raises(ClusterAuthorizationFailedError):
            Admin(broker.address, token=mallory).list_quotas()
        with pytest.raises(InvalidRequestError):
            client.set_quota("", produce_bytes_per_s=1)
        with pytest.raises(InvalidRequestError):
            client.set_quota("bob", produce_bytes_per_s=float("nan"))
        client.close()

        broker.restart()
        client = Admin(broker.address, token=admin)
        assert {q.principal for q in client.list_quotas()} == {"*", "alice"}
        removed = client.set_quota("*", requests_per_s=0)  # all 0: the entry goes
        assert removed.requests_per_s == 0
        assert [q.principal for q in client.list_quotas()] == ["alice"]
        client.close()
    assert set(QuotaFile(data).read()) == {"alice"}


def test_online_quota_needs_acls(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = CredentialStore(data).add("admin")
    with BrokerProcess(data, auth=True) as broker:
        client = Admin(broker.address, token=token)
        with pytest.raises(InvalidRequestError, match="--acls"):
            client.set_quota("admin", requests_per_s=1)
        client.close()
