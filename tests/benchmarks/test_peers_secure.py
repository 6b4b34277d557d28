"""Smoke test of the peer benchmark's "TLS + token + ACLs" system: the broker started with
`logstream certs dev` certificates, --auth and --acls, the logstream adapter's produce,
replay and group workloads through it as an ordinary (not super) user, a workload its rules
do not allow refused, and the 15% rows of the ratio table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import run, servers  # noqa: E402

pytestmark = pytest.mark.slow
N, SIZE = 2_500, 100
ADAPTER = "benchmarks.peers.logstream_adapter"


@pytest.fixture(scope="module")
def secure():
    srv = servers.logstream_secure()
    try:
        yield srv
    finally:
        srv.stop()
    assert srv.proc.poll() is not None, "the server we started is still running"
    assert not srv.workdir.exists(), "the server's temp dir was not removed"


def _call(srv, func: str, *args, env=None):
    env = srv.extra["client_env"] if env is None else env
    return run.call(ADAPTER, func, (srv.addr, *args), 60, env)


def test_produce_replay_group_through_tls_token_and_acls(secure):
    res = _call(secure, "produce", "bench-smoke", N, SIZE)
    assert (res.records, res.bytes) == (N, N * SIZE) and res.rate > 0
    rep = _call(secure, "replay", "bench-smoke", N, SIZE)
    assert (rep.records, rep.bytes) == (N, N * SIZE)
    grp = _call(secure, "group_consume", "bench-smoke", N, SIZE)
    assert (grp.records, grp.bytes) == (N, N * SIZE)


def test_the_rules_and_the_token_are_really_checked(secure):
    with pytest.raises(RuntimeError, match="TopicAuthorizationFailedError: not authorized"):
        _call(secure, "produce", "other-topic", 10, SIZE)  # outside the "bench" prefix
    no_token = {**secure.extra["client_env"], "LOGSTREAM_TOKEN": ""}
    with pytest.raises(RuntimeError, match="AuthenticationFailedError: no credentials"):
        _call(secure, "produce", "bench-anonymous", 10, SIZE, env=no_token)


def _entry(rate: float) -> dict:
    return {"rate": (rate, rate, rate), "mb_s": (rate / 1e4,) * 3, "runs": 1}


def test_the_15_percent_rows():
    agg = {
        "logstream": {"produce 100B": _entry(1_000_000), "replay 100B": _entry(2_000_000)},
        "secure": {"produce 100B": _entry(900_000), "replay 100B": _entry(1_600_000)},
    }
    rows: list[str] = []
    labels = {s: run.SYSTEMS[s][1] for s in ("logstream", "secure")}
    run.render_secure(rows.append, ["logstream", "secure"], labels, agg)
    produce = next(r for r in rows if r.startswith("| produce 100B"))
    replay = next(r for r in rows if r.startswith("| replay 100B"))
    assert "within 15% of plaintext | 0.90x | met |" in produce
    assert "within 15% of plaintext | 0.80x | MISSED |" in replay
    assert any(r.startswith("| group 100B") and "n/a" in r for r in rows)
